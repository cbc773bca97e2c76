"""WebDataset shard writing and DALI index files.

Tars are written deterministically (sorted members per sample, mtime 0, uid/gid 0, plain
ustar/pax headers), to a temporary name and renamed when complete, so a killed run never
leaves a half-written ``NNNNN.tar`` behind. The index is DALI's wds2idx format ("v1.2 N",
then one line per sample: ``ext offset size name`` for each member), computed with
``tarfile``'s data offsets; tests check it equals the output of DALI's own ``wds2idx``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
INDEX_VERSION = "v1.2"
# member extension order inside a sample (DALI and webdataset only need them adjacent)
MEMBER_ORDER = ("jpg", "txt", "json")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def check_key(key: str) -> None:
    if not KEY_RE.match(key):
        raise ValueError(f"invalid sample key {key!r}: must match [A-Za-z0-9_-]+")


def shard_name(index: int) -> str:
    return f"{index:05d}"


def write_index(tar_path: str | Path, idx_path: str | Path) -> int:
    """Write the DALI index of ``tar_path``; returns the number of samples."""
    samples: list[list[tuple[str, int, int, str]]] = []
    last = None
    with tarfile.open(tar_path, "r:") as tf:
        for m in tf:
            if not m.isreg():
                continue
            base_dir, _, fname = m.name.rpartition("/")
            dot = fname.find(".")
            if dot <= 0:
                continue  # hidden file or no extension: not a sample member
            basename = (base_dir + "/" if base_dir else "") + fname[:dot]
            ext = fname[dot + 1:]
            if basename != last:
                samples.append([])
                last = basename
            samples[-1].append((ext, m.offset_data, m.size, m.name))
    if not samples:
        raise ValueError(f"{tar_path}: empty WebDataset tar")
    tmp = Path(str(idx_path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(f"{INDEX_VERSION} {len(samples)}\n")
        for bundle in samples:
            f.write(" ".join(f"{e} {o} {s} {n}" for e, o, s, n in bundle))
            f.write("\n")
    os.replace(tmp, idx_path)
    return len(samples)


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def sample_members(key: str, jpg: bytes, caption: str, meta: dict[str, Any]) -> list[tuple[str, bytes]]:
    check_key(key)
    return [(f"{key}.jpg", jpg),
            (f"{key}.txt", caption.encode("utf-8")),
            (f"{key}.json", json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8"))]


@dataclass
class ShardInfo:
    tar: str  # relative to the version dir
    index: str
    samples: int
    bytes: int
    sha256: str
    keys_sha256: str = ""  # hash of the ordered key list (cheap identity of the sample set)

    def as_dict(self) -> dict[str, Any]:
        return {"tar": self.tar, "index": self.index, "samples": self.samples,
                "bytes": self.bytes, "sha256": self.sha256, "keys_sha256": self.keys_sha256}


@dataclass
class ShardWriter:
    """Writes one shard: ``add`` samples, then ``close`` -> ShardInfo (tar + idx on disk)."""

    version_dir: Path
    index: int
    _tf: tarfile.TarFile | None = None
    _keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.version_dir = Path(self.version_dir)
        (self.version_dir / "shards").mkdir(parents=True, exist_ok=True)
        self._tmp = self.version_dir / "shards" / f"{shard_name(self.index)}.tar.partial"
        self._tf = tarfile.open(self._tmp, "w", format=tarfile.PAX_FORMAT)

    def add(self, key: str, jpg: bytes, caption: str, meta: dict[str, Any]) -> None:
        assert self._tf is not None
        for name, data in sample_members(key, jpg, caption, meta):
            self._tf.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
        self._keys.append(key)

    def __len__(self) -> int:
        return len(self._keys)

    def close(self) -> ShardInfo:
        assert self._tf is not None
        self._tf.close()
        self._tf = None
        stem = shard_name(self.index)
        tar = self.version_dir / "shards" / f"{stem}.tar"
        idx = self.version_dir / "shards" / f"{stem}.idx"
        with open(self._tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self._tmp, tar)
        write_index(tar, idx)
        return ShardInfo(tar=f"shards/{stem}.tar", index=f"shards/{stem}.idx",
                         samples=len(self._keys), bytes=tar.stat().st_size,
                         sha256=sha256_file(tar),
                         keys_sha256=sha256_bytes("\n".join(self._keys).encode()))

    def abort(self) -> None:
        if self._tf is not None:
            self._tf.close()
            self._tf = None
        self._tmp.unlink(missing_ok=True)


def read_shard(tar_path: str | Path) -> list[dict[str, Any]]:
    """All samples of a shard as dicts ``{"key", "jpg", "txt", "json"}`` (for tests/tools)."""
    out: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    with tarfile.open(tar_path, "r:") as tf:
        for m in tf:
            if not m.isreg():
                continue
            key, _, ext = m.name.partition(".")
            f = tf.extractfile(m)
            data = f.read() if f else b""
            if key not in out:
                out[key] = {"key": key}
                order.append(key)
            if ext == "txt":
                out[key]["txt"] = data.decode("utf-8")
            elif ext == "json":
                out[key]["json"] = json.loads(data)
            else:
                out[key][ext] = data
    return [out[k] for k in order]
