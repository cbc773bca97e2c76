"""Writing one dataset version directory: ``<root>/<dataset>/<version>/``.

A version is immutable once its manifest exists: writing into it again raises
``VersionExistsError`` (a new URL table makes a new version; old ones are never rewritten).
A directory without a manifest is an interrupted run; writers may reuse or clear it.

One writer per version: ``lock_version`` holds ``<version_dir>/.lock`` (``mamo.core.lock``)
for the whole write, so a second ingest into the same version exits 2 naming the first.
A ``VersionWriter`` journals each finished shard (``_work/shards.jsonl``, with the
outcomes of the input rows it covers); a run stopped by a signal or a full disk is resumed
by a rerun with the same source and settings, after the last journaled row.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mamo.core.files import write_json
from mamo.core.lock import LOCK_NAME, exclusive

from .accounting import Accounting, write_failures
from .manifest import MANIFEST_NAME, build_manifest, write_manifest
from .shards import ShardInfo, ShardWriter, sha256_bytes

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
WORK = "_work"
JOURNAL = "shards.jsonl"
FINGERPRINT = "writer.json"


class VersionExistsError(FileExistsError):
    pass


def version_dir(root: str | Path, dataset: str, version: str) -> Path:
    for what, name in (("dataset", dataset), ("version", version)):
        if not NAME_RE.match(name) or ".." in name:
            raise ValueError(f"invalid {what} name {name!r} (letters, digits, _ . -)")
    return Path(root) / dataset / version


def prepare_version_dir(root: str | Path, dataset: str, version: str, overwrite: bool = False,
                        keep_partial: bool = False) -> Path:
    """Create (or reopen) the directory of a version that is not complete yet."""
    vdir = version_dir(root, dataset, version)
    if (vdir / MANIFEST_NAME).exists():
        if not overwrite:
            raise VersionExistsError(f"{vdir} is a complete version (manifest.json exists); "
                                     "choose a new version name (or pass overwrite)")
        for p in vdir.iterdir():  # all but the lock file, which the caller holds
            if p.name != LOCK_NAME:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    elif vdir.exists() and not keep_partial:
        for sub in ("shards", "_work"):
            shutil.rmtree(vdir / sub, ignore_errors=True)
        (vdir / "failures.parquet").unlink(missing_ok=True)
    (vdir / "shards").mkdir(parents=True, exist_ok=True)
    return vdir


@contextlib.contextmanager
def lock_version(root: str | Path, dataset: str, version: str) -> Iterator[Path]:
    """Hold the write lock of a dataset version (a second writer gets ``LockHeld``)."""
    vdir = version_dir(root, dataset, version)
    with exclusive(vdir, f"ingest of {dataset}/{version}"):
        yield vdir


def sample_meta(key: str, jpg: bytes, caption: str, width: int, height: int,
                original_width: int, original_height: int, url: str | None = None,
                source_path: str | None = None, **extra: Any) -> dict[str, Any]:
    """``KEY.json`` with the fields of the contract; ``sha256`` is of the stored JPEG bytes."""
    meta: dict[str, Any] = {"key": key, "caption": caption, "width": int(width),
                            "height": int(height), "original_width": int(original_width),
                            "original_height": int(original_height), "sha256": sha256_bytes(jpg)}
    if url is not None:
        meta["url"] = url
    if source_path is not None:
        meta["source_path"] = source_path
    for k, v in extra.items():
        if k not in meta:
            meta[k] = v
    return meta


def fingerprint(*parts: Any) -> str:
    """sha256 of JSON-able ``parts``: what a resumed run must share with the cut one."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class VersionWriter:
    """Rolls samples into shards of ``samples_per_shard`` and writes the manifest last.

    With a ``fingerprint`` (of the source and settings), each finished shard is journaled
    with the outcomes ``accounting`` holds for the rows it covers (``add(..., row=)``); a new
    writer on a partial version with the same fingerprint keeps those shards, loads their
    outcomes into ``accounting`` and sets ``resume_row``: the caller skips the rows before it.
    A different fingerprint (or none) starts the partial version afresh.
    """

    def __init__(self, root: str | Path, dataset: str, version: str,
                 samples_per_shard: int = 1000, overwrite: bool = False,
                 accounting: Accounting | None = None, fingerprint: str = ""):
        if samples_per_shard < 1:
            raise ValueError("samples_per_shard must be >= 1")
        self.dataset, self.version = dataset, version
        vdir = version_dir(root, dataset, version)
        work = vdir / WORK
        keep = bool(fingerprint) and not overwrite and _stored_fingerprint(work) == fingerprint
        self.dir = prepare_version_dir(root, dataset, version, overwrite, keep_partial=keep)
        self.samples_per_shard = samples_per_shard
        self.acc = accounting if accounting is not None else Accounting()
        self.shards: list[ShardInfo] = []
        self._cur: ShardWriter | None = None
        self._keys: set[str] = set()
        self._journal = work / JOURNAL if fingerprint else None
        self.resume_row = self._journaled_row = 0
        if self._journal is None:
            return
        work.mkdir(parents=True, exist_ok=True)
        entries = _read_journal(self._journal, self.dir) if keep else []
        for stale in self.dir.glob("shards/*"):  # shards after the journaled ones are redone
            if stale.stem.isdigit() and int(stale.stem) >= len(entries):
                stale.unlink()
        for e in entries:
            self.shards.append(ShardInfo(**e["shard"]))
            self._keys.update(e["keys"])
            for row, status, reason, detail, url, caption in e["outcomes"]:
                self.acc.record(row, status, reason, detail, url, caption)
            self.resume_row = self._journaled_row = e["next_row"]
        # rewrite the journal as its consistent prefix (a cut last line is dropped)
        with open(self._journal, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
        if not keep:
            write_json(work / FINGERPRINT, {"fingerprint": fingerprint})

    def add(self, key: str, jpg: bytes, caption: str, meta: dict[str, Any],
            row: int | None = None) -> None:
        """Add a sample (``row``: its input row, outcome already in ``accounting`` or not)."""
        if key in self._keys:
            raise ValueError(f"duplicate sample key {key!r}")
        self._keys.add(key)
        if self._cur is None:
            self._cur = ShardWriter(self.dir, len(self.shards))
        self._cur.add(key, jpg, caption, meta)
        if len(self._cur) >= self.samples_per_shard:
            cur, self._cur = self._cur, None
            self.shards.append(cur.close())
            self._journal_shard(cur, row)

    def _journal_shard(self, cur: ShardWriter, row: int | None) -> None:
        if self._journal is None or row is None:
            return
        start, self._journaled_row = self._journaled_row, row + 1
        outcomes = [[o.row, o.status, o.reason, o.detail, o.url, o.caption]
                    for r in range(start, row + 1) if (o := self.acc.outcomes.get(r))]
        if not any(o[0] == row for o in outcomes):  # the caller records the row after add()
            outcomes.append([row, "written", "", "", "", ""])
        entry = {"shard": self.shards[-1].as_dict(), "keys": list(cur._keys),
                 "next_row": row + 1, "outcomes": outcomes}
        try:
            with open(self._journal, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:  # a full disk: the shard is redone by the rerun (line cut)
            raise OSError(e.errno, e.strerror, str(self._journal)) from e

    def finish(self, source: dict[str, Any], params: dict[str, Any],
               accounting: Accounting | None = None) -> dict[str, Any]:
        accounting = accounting if accounting is not None else self.acc
        if self._cur is not None:
            if len(self._cur):
                self.shards.append(self._cur.close())
            else:
                self._cur.abort()
            self._cur = None
        accounting.check_complete()
        write_failures(self.dir / "failures.parquet", accounting.failures())
        manifest = build_manifest(self.dataset, self.version, source, params,
                                  accounting.counts(), [s.as_dict() for s in self.shards],
                                  extra={"reasons": accounting.reasons()})
        write_manifest(self.dir, manifest)
        shutil.rmtree(self.dir / WORK, ignore_errors=True)
        return manifest

    def abort(self) -> None:
        if self._cur is not None:
            self._cur.abort()
            self._cur = None


def _stored_fingerprint(work: Path) -> str | None:
    try:
        return json.loads((work / FINGERPRINT).read_text(encoding="utf-8"))["fingerprint"]
    except (OSError, ValueError, KeyError):
        return None


def _read_journal(path: Path, vdir: Path) -> list[dict[str, Any]]:
    """The journal's consistent prefix: entry i is shard i, on disk with its recorded size."""
    entries: list[dict[str, Any]] = []
    if not path.is_file():
        return entries
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut by a kill
        tar = vdir / e["shard"]["tar"]
        if e["shard"]["tar"] != f"shards/{i:05d}.tar" or not tar.is_file() \
                or tar.stat().st_size != e["shard"]["bytes"] or not (vdir / e["shard"]["index"]).is_file():
            break
        entries.append(e)
    return entries
