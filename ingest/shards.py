"""The shard format, in one room: writing, reading and indexing WebDataset tars.

A shard is an uncompressed tar of samples; a sample is the consecutive members that share a
key (``KEY.jpg``, ``KEY.txt``, ``KEY.json``). Every stage reads shards through the functions
here: ``iter_members`` (the tar, member by member), ``group_samples`` / ``iter_samples`` (one
shard, sample by sample), ``iter_version_samples`` (a whole dataset version in manifest
order) and ``read_members_by_key`` (the members of chosen samples). The training loader's
random access by byte offset (``mamo.data.index``) reads the DALI index built here.

Why one function over ``tarfile`` and not the ``webdataset`` library: the readers need what
webdataset does not give, namely data offsets (the DALI index), non-regular and misnamed
members reported rather than skipped (``ingest verify``), raw caption bytes (invalid UTF-8 is
counted by concepts, not decoded away) and errors as one ``ShardReadError`` naming the shard;
and importing webdataset imports torch (about 1.3 s), which ingest and concepts do not need.
Grouping follows webdataset's rule (key = the member path up to the first dot of its file
name; a new key starts a new sample), so webdataset reads our shards the same way (tests
check it does).

Tars are written deterministically (sorted members per sample, mtime 0, uid/gid 0, plain
ustar/pax headers), to a temporary name and renamed when complete (``mamo.core.files``), so a
killed run never leaves a half-written ``NNNNN.tar`` behind. The index is DALI's wds2idx
format ("v1.2 N", then one line per sample: ``ext offset size name`` for each member),
computed with ``tarfile``'s data offsets; tests check it equals the output of DALI's own
``wds2idx``.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mamo.core.files import atomic_path, write_text

from .manifest import load_manifest

KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
INDEX_VERSION = "v1.2"
# member extension order inside a sample (DALI and webdataset only need them adjacent)
MEMBER_ORDER = ("jpg", "txt", "json")


class ShardReadError(ValueError):
    """A shard that does not read as a tar to its end; the message names the shard."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: unreadable tar ({reason})")


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


# ------------------------------------------------------------------------------ reading

def split_name(name: str) -> tuple[str, str]:
    """``"dir/KEY.ext.more"`` -> ``("dir/KEY", "ext.more")``: webdataset's and DALI's rule.

    A hidden or extension-less file name gives ``ext == ""`` (not a sample member).
    """
    base_dir, _, fname = name.rpartition("/")
    dot = fname.find(".")
    if dot <= 0:
        return name, ""
    return (base_dir + "/" if base_dir else "") + fname[:dot], fname[dot + 1:]


@dataclass(frozen=True)
class Member:
    """One tar member: its name split into sample key and extension, where its data lies."""

    name: str
    key: str
    ext: str
    offset: int  # of the data, in the tar file (what the DALI index records)
    size: int
    regular: bool
    data: bytes | None  # None when not read (see ``iter_members``) or not a regular file


def iter_members(tar_path: str | Path, read: bool | Collection[str] = True,
                 regular_only: bool = True) -> Iterator[Member]:
    """The members of a shard in tar order.

    ``read``: read every member's data (True), none (False), or only that of these
    extensions. ``regular_only=False`` also yields directories, links etc. (for ``verify``).
    A tar that cannot be read to its end, or a member shorter than its header says, raises
    ``ShardReadError`` naming the shard; a missing file raises ``FileNotFoundError``.
    """
    try:
        with tarfile.open(tar_path, "r:") as tf:
            for m in tf:
                key, ext = split_name(m.name)
                regular = m.isreg()
                if not regular and regular_only:
                    continue
                data = None
                if regular and (read is True or (read is not False and ext in read)):
                    f = tf.extractfile(m)
                    data = f.read() if f else b""
                    if len(data) != m.size:
                        raise tarfile.ReadError(f"member {m.name} truncated")
                yield Member(m.name, key, ext, m.offset_data, m.size, regular, data)
    except FileNotFoundError:
        raise
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ShardReadError(tar_path, f"{type(e).__name__}: {e}") from e


def group_samples(members: Iterable[Member]) -> Iterator[dict[str, Any]]:
    """Consecutive members sharing a key -> one sample ``{"__key__": key, ext: data, ...}``.

    Members without an extension are not part of any sample. As in webdataset, a key seen
    again after another one starts a new sample.
    """
    sample: dict[str, Any] | None = None
    for m in members:
        if not m.ext:
            continue
        if sample is None or sample["__key__"] != m.key:
            if sample is not None:
                yield sample
            sample = {"__key__": m.key}
        if m.data is not None:
            sample[m.ext] = m.data
    if sample is not None:
        yield sample


def iter_samples(tar_path: str | Path, exts: Collection[str] | None = None
                 ) -> Iterator[dict[str, Any]]:
    """The samples of one shard in tar order, as raw bytes per extension.

    With ``exts``, only those members are read (a sample lacking them is still yielded, with
    just ``__key__``), so reading the captions of a shard does not read its JPEGs.
    """
    return group_samples(iter_members(tar_path, read=True if exts is None else exts))


def version_shards(version_dir: str | Path) -> list[Path]:
    """The tar paths of a dataset version, in manifest order (the manifest validated)."""
    version_dir = Path(version_dir)
    return [version_dir / s["tar"] for s in load_manifest(version_dir)["shards"]]


def iter_version_samples(version_dir: str | Path, exts: Collection[str] | None = None
                         ) -> Iterator[dict[str, Any]]:
    """Every sample of a dataset version, in manifest then tar order (``iter_samples``);
    each also carries ``"__shard__"``, the path of its tar."""
    for tar_path in version_shards(version_dir):
        for sample in iter_samples(tar_path, exts):
            sample["__shard__"] = tar_path
            yield sample


def read_members_by_key(version_dir: str | Path, keys: Collection[str], ext: str = "jpg"
                        ) -> dict[str, bytes]:
    """``key -> KEY.<ext> bytes`` for those of ``keys`` found in the version (the caller
    decides what a missing key means); stops reading once all are found."""
    wanted, found = set(keys), {}
    for sample in iter_version_samples(version_dir, exts=(ext,)):
        if sample["__key__"] in wanted and ext in sample:
            found[sample["__key__"]] = sample[ext]
            if len(found) == len(wanted):
                break
    return found


def decode_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """``{"key", "jpg": bytes, "txt": str, "json": dict}`` of a raw sample."""
    out: dict[str, Any] = {"key": sample["__key__"]}
    for ext, data in sample.items():
        if ext.startswith("__"):
            continue
        if ext == "txt":
            out[ext] = data.decode("utf-8")
        elif ext == "json":
            out[ext] = json.loads(data)
        else:
            out[ext] = data
    return out


def read_shard(tar_path: str | Path) -> list[dict[str, Any]]:
    """All samples of a shard, decoded (``decode_sample``; for tests and tools)."""
    return [decode_sample(s) for s in iter_samples(tar_path)]


# ------------------------------------------------------------------------------ index

IndexRecord = list[tuple[str, int, int, str]]  # one sample: (ext, offset, size, name) per member


def index_records(tar_path: str | Path) -> list[IndexRecord]:
    """What the DALI index of a shard holds: per sample, its members' (ext, offset, size, name)."""
    samples: list[IndexRecord] = []
    last = None
    for m in iter_members(tar_path, read=False):
        if not m.ext:
            continue  # hidden file or no extension: not a sample member
        if m.key != last:
            samples.append([])
            last = m.key
        samples[-1].append((m.ext, m.offset, m.size, m.name))
    return samples


def index_text(tar_path: str | Path, samples: list[IndexRecord] | None = None) -> str:
    """The DALI (wds2idx) index file of ``tar_path``, as text; from ``samples`` (its
    ``index_records``, when the writer already knows them) without reading the tar."""
    samples = index_records(tar_path) if samples is None else samples
    if not samples:
        raise ValueError(f"{tar_path}: empty WebDataset tar")
    lines = [f"{INDEX_VERSION} {len(samples)}"]
    lines += [" ".join(f"{e} {o} {s} {n}" for e, o, s, n in bundle) for bundle in samples]
    return "\n".join(lines) + "\n"


def write_index(tar_path: str | Path, idx_path: str | Path, samples: list[IndexRecord] | None = None) -> int:
    """Write the DALI index of ``tar_path`` (from ``samples`` if given); returns the number
    of samples."""
    text = index_text(tar_path, samples)
    write_text(idx_path, text)
    return text.count("\n") - 1  # the header line, then one line per sample


# ------------------------------------------------------------------------------ writing

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


class _Aborted(Exception):
    """Handed to the temp file's context on ``abort`` so that it removes the file."""


@dataclass
class ShardWriter:
    """Writes one shard: ``add`` samples, then ``close`` -> ShardInfo (tar + idx on disk)."""

    version_dir: Path
    index: int
    _tf: tarfile.TarFile | None = None
    _keys: list[str] = field(default_factory=list)
    # the index records as written (data offsets from the tar's position), so that close()
    # need not read the shard back to index it
    _records: list[IndexRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.version_dir = Path(self.version_dir)
        (self.version_dir / "shards").mkdir(parents=True, exist_ok=True)
        self._tar = self.version_dir / "shards" / f"{shard_name(self.index)}.tar"
        # a killed writer's temp file (``mamo.core.files`` naming, another pid) would stay
        # beside the finished shard of a resumed run
        for stale in self._tar.parent.glob(f".{self._tar.name}.tmp-*"):
            stale.unlink(missing_ok=True)
        # the shard stays open across add() calls: enter the atomic write by hand
        self._target = atomic_path(self._tar, fsync=True)
        self._tf = tarfile.open(self._target.__enter__(), "w", format=tarfile.PAX_FORMAT)

    def add(self, key: str, jpg: bytes, caption: str, meta: dict[str, Any]) -> None:
        assert self._tf is not None
        try:
            bundle: IndexRecord = []
            for name, data in sample_members(key, jpg, caption, meta):
                self._tf.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
                # after addfile the tar's offset is past the data's 512-byte padding
                padded = -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
                bundle.append((split_name(name)[1], self._tf.offset - padded, len(data), name))
        except OSError as e:  # a full disk: tarfile's error names no file
            self.abort()
            raise OSError(e.errno, e.strerror, str(self._tar)) from e
        self._keys.append(key)
        self._records.append(bundle)

    def __len__(self) -> int:
        return len(self._keys)

    def close(self) -> ShardInfo:
        assert self._tf is not None
        try:
            self._tf.close()
        except OSError as e:
            self._tf = None
            self._target.__exit__(type(e), e, None)  # removes the temp file, names the shard
            raise
        self._tf = None
        self._target.__exit__(None, None, None)  # fsync + rename onto NNNNN.tar
        stem = shard_name(self.index)
        idx = self.version_dir / "shards" / f"{stem}.idx"
        write_index(self._tar, idx, self._records)
        return ShardInfo(tar=f"shards/{stem}.tar", index=f"shards/{stem}.idx",
                         samples=len(self._keys), bytes=self._tar.stat().st_size,
                         sha256=sha256_file(self._tar),
                         keys_sha256=sha256_bytes("\n".join(self._keys).encode()))

    def abort(self) -> None:
        if self._tf is not None:
            tf, self._tf = self._tf, None
            with contextlib.suppress(OSError):  # flushing onto a full disk fails again
                tf.close()
            with contextlib.suppress(_Aborted):
                self._target.__exit__(_Aborted, _Aborted(), None)  # removes the temp file
