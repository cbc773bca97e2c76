"""The sample index of a dataset version: where each sample's members lie in its shard.

Built from ``manifest.json`` and the per-shard DALI index files (wds2idx format
``v1.2 N`` then one line per sample: ``ext offset size name`` repeated per member). With the
offsets, any sample is two ``os.pread`` calls away, so the loaders read samples in an order
they choose themselves (needed for exact resume) without scanning tars.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ingest.manifest import ManifestError, load_manifest
from ingest.shards import index_records, sha256_file
from mamo.core.cli import UserError

log = logging.getLogger(__name__)

IMAGE_EXT = "jpg"
CAPTION_EXT = "txt"
META_EXT = "json"


class ShardIndexError(ValueError):
    """An index file or manifest does not describe its shards."""


class CorruptShard(UserError):
    """A shard differs from what its manifest says (one line naming it; exit 2)."""


def check_shards(version_dir: str | Path, manifest: dict[str, Any], verify: str = "size"
                 ) -> list[tuple[str, str]]:
    """Shards that differ from the manifest, as ``(tar, why)``: ``verify="size"`` compares
    each file's size with the manifest (a stat per shard), ``"full"`` also its sha256 (reads
    every byte), ``"off"`` checks nothing."""
    bad: list[tuple[str, str]] = []
    if verify == "off":
        return bad
    for shard in manifest["shards"]:
        tar = Path(version_dir) / shard["tar"]
        try:
            size = tar.stat().st_size
            if size != shard["bytes"]:
                bad.append((shard["tar"], f"{size} bytes, the manifest says {shard['bytes']}"))
            elif verify == "full" and sha256_file(tar) != shard["sha256"]:
                bad.append((shard["tar"], "sha256 differs from the manifest"))
        except OSError as e:
            bad.append((shard["tar"], e.strerror or str(e)))
    return bad


def refuse_corrupt(version_dir: str | Path, bad: list[tuple[str, str]], can_skip: bool = True) -> None:
    """``CorruptShard`` naming the first bad shard (and how many more there are)."""
    if bad:
        tar, why = bad[0]
        more = f" ({len(bad) - 1} more shards too)" if len(bad) > 1 else ""
        raise CorruptShard(f"data: shard {Path(version_dir) / tar} is corrupt: {why}{more}; re-ingest it"
                           + (", or set data.on_corrupt=skip to leave it out" if can_skip else ""))


def require_intact(version_dir: str | Path, verify: str = "size") -> None:
    """For readers that cannot leave a shard out (evaluation, fine-tuning's images): every
    shard as the manifest says, else ``CorruptShard`` naming the first bad one."""
    try:
        manifest = load_manifest(version_dir)
    except ManifestError as e:
        raise CorruptShard(f"data: {e}") from e
    refuse_corrupt(version_dir, check_shards(version_dir, manifest, verify), can_skip=False)


def _record(members: list[tuple[str, int, int, str]]) -> dict[str, Any]:
    """One sample's ``(ext, offset, size, name)`` members -> ``{"__key__", ext: (offset, size)}``."""
    sample: dict[str, Any] = {ext: (off, size) for ext, off, size, _ in members}
    base = os.path.basename(members[-1][3])
    sample["__key__"] = base[: base.find(".")] if "." in base else base
    return sample


def parse_index_file(path: str | Path) -> list[dict[str, tuple[int, int]]]:
    """One dict per sample: ``{"__key__": ..., ext: (offset, size), ...}`` in tar order."""
    with open(path, encoding="utf-8") as f:
        header = f.readline().split()
        if len(header) != 2 or not header[0].startswith("v1"):
            raise ShardIndexError(f"{path}: not a DALI webdataset index (header {header})")
        expected = int(header[1])
        samples = []
        for lineno, line in enumerate(f, start=2):
            parts = line.split()
            if not parts:
                continue
            if len(parts) % 4:
                raise ShardIndexError(f"{path}:{lineno}: expected groups of 'ext offset size name'")
            samples.append(_record([(parts[i], int(parts[i + 1]), int(parts[i + 2]), parts[i + 3])
                                    for i in range(0, len(parts), 4)]))
    if len(samples) != expected:
        raise ShardIndexError(f"{path}: header says {expected} samples, found {len(samples)}")
    return samples


def scan_tar(path: str | Path) -> list[dict[str, tuple[int, int]]]:
    """The same records as ``parse_index_file``, by reading the tar (when no index exists)."""
    return [_record(members) for members in index_records(path)]


@dataclass
class SampleIndex:
    """Flat arrays over every sample of a version, in manifest shard order then tar order.

    A member that is absent has size -1 (the loaders skip and count such samples).
    """

    version_dir: Path
    shard_paths: list[Path]
    shard_stems: list[str]
    shard_of: np.ndarray  # int32 [N]
    keys: list[str]
    image_offset: np.ndarray  # int64 [N]
    image_size: np.ndarray  # int64 [N], -1 = no .jpg member
    caption_offset: np.ndarray
    caption_size: np.ndarray  # -1 = no .txt member
    meta_offset: np.ndarray  # the .json member (the synthetic source's scene: caption-true crops)
    meta_size: np.ndarray  # -1 = no .json member
    shard_sizes: list[int] = field(default_factory=list)
    # shards of the manifest left out (data.on_corrupt=skip), as {"tar", "reason"}
    left_out: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def fingerprint(self) -> str:
        """Identifies the sample set, so a saved loader position is not applied to other data."""
        return f"{len(self.keys)}:{','.join(self.shard_stems)}:{self.keys[0] if self.keys else ''}:" \
               f"{self.keys[-1] if self.keys else ''}"


def build_index(version_dir: str | Path, verify: str = "off", on_corrupt: str = "fail") -> SampleIndex:
    """Index every shard listed in the version's manifest, after checking them against it
    (``check_shards``): a bad one raises ``CorruptShard``, or is left out with
    ``on_corrupt="skip"`` (listed in ``SampleIndex.left_out``)."""
    version_dir = Path(version_dir)
    manifest = load_manifest(version_dir)
    bad = dict(check_shards(version_dir, manifest, verify))
    if bad and on_corrupt != "skip":
        refuse_corrupt(version_dir, list(bad.items()))
    for tar, why in bad.items():
        log.warning("data: leaving out corrupt shard %s (%s; data.on_corrupt=skip)", version_dir / tar, why)
    shard_paths, stems, sizes = [], [], []
    columns: dict[str, list[int]] = {k: [] for k in ("shard", "io", "is", "co", "cs", "mo", "ms")}
    keys: list[str] = []
    shards = [s for s in manifest["shards"] if s["tar"] not in bad]
    for s, shard in enumerate(tqdm(shards, desc="index", unit="shard", disable=len(shards) < 50)):
        tar = version_dir / shard["tar"]
        idx = version_dir / shard["index"] if shard.get("index") else None
        if idx is not None and idx.is_file():
            records = parse_index_file(idx)
        else:
            log.warning("no index file for %s; scanning the tar (slow for big shards)", tar)
            records = scan_tar(tar)
        if shard.get("samples") is not None and shard["samples"] != len(records):
            log.warning("%s: manifest says %d samples, index has %d", tar, shard["samples"], len(records))
        shard_paths.append(tar)
        stems.append(Path(shard["tar"]).name.split(".")[0])
        sizes.append(len(records))
        for r in records:
            keys.append(r["__key__"])
            columns["shard"].append(s)
            io, isz = r.get(IMAGE_EXT, (0, -1))
            co, csz = r.get(CAPTION_EXT, (0, -1))
            columns["io"].append(io)
            columns["is"].append(isz)
            columns["co"].append(co)
            columns["cs"].append(csz)
            mo, msz = r.get(META_EXT, (0, -1))
            columns["mo"].append(mo)
            columns["ms"].append(msz)
    return SampleIndex(
        version_dir=version_dir, shard_paths=shard_paths, shard_stems=stems,
        shard_of=np.asarray(columns["shard"], dtype=np.int32), keys=keys,
        image_offset=np.asarray(columns["io"], dtype=np.int64),
        image_size=np.asarray(columns["is"], dtype=np.int64),
        caption_offset=np.asarray(columns["co"], dtype=np.int64),
        caption_size=np.asarray(columns["cs"], dtype=np.int64),
        meta_offset=np.asarray(columns["mo"], dtype=np.int64),
        meta_size=np.asarray(columns["ms"], dtype=np.int64),
        shard_sizes=sizes, left_out=[{"tar": t, "reason": why} for t, why in bad.items()],
    )


class ShardFiles:
    """Open shard files, read by offset with ``os.pread`` (no shared file position, so it is
    safe across threads and forked DataLoader workers)."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    def read(self, shard: int, offset: int, size: int) -> bytes:
        if os.getpid() != self._pid:  # forked: descriptors are shared but we keep our own
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(shard)
        if fd is None:
            fd = self._fds[shard] = os.open(self.paths[shard], os.O_RDONLY)
        data = os.pread(fd, size, offset)
        if len(data) != size:
            raise OSError(f"{self.paths[shard]}: short read at {offset} ({len(data)} of {size} bytes)")
        return data

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __getstate__(self) -> dict:
        return {"paths": self.paths}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["paths"])

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

