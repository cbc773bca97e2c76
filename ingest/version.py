"""Writing one dataset version directory: ``<root>/<dataset>/<version>/``.

A version is immutable once its manifest exists: writing into it again raises
``VersionExistsError`` (a new URL table makes a new version; old ones are never rewritten).
A directory without a manifest is an interrupted run; writers may reuse or clear it.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from .accounting import Accounting, write_failures
from .manifest import MANIFEST_NAME, build_manifest, write_manifest
from .shards import ShardInfo, ShardWriter, sha256_bytes

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
        shutil.rmtree(vdir)
    elif vdir.exists() and not keep_partial:
        for sub in ("shards", "_work"):
            shutil.rmtree(vdir / sub, ignore_errors=True)
        (vdir / "failures.parquet").unlink(missing_ok=True)
    (vdir / "shards").mkdir(parents=True, exist_ok=True)
    return vdir


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


class VersionWriter:
    """Rolls samples into shards of ``samples_per_shard`` and writes the manifest last."""

    def __init__(self, root: str | Path, dataset: str, version: str,
                 samples_per_shard: int = 1000, overwrite: bool = False):
        if samples_per_shard < 1:
            raise ValueError("samples_per_shard must be >= 1")
        self.dataset, self.version = dataset, version
        self.dir = prepare_version_dir(root, dataset, version, overwrite)
        self.samples_per_shard = samples_per_shard
        self.shards: list[ShardInfo] = []
        self._cur: ShardWriter | None = None
        self._keys: set[str] = set()

    def add(self, key: str, jpg: bytes, caption: str, meta: dict[str, Any]) -> None:
        if key in self._keys:
            raise ValueError(f"duplicate sample key {key!r}")
        self._keys.add(key)
        if self._cur is None:
            self._cur = ShardWriter(self.dir, len(self.shards))
        self._cur.add(key, jpg, caption, meta)
        if len(self._cur) >= self.samples_per_shard:
            self.shards.append(self._cur.close())
            self._cur = None

    def finish(self, source: dict[str, Any], params: dict[str, Any],
               accounting: Accounting) -> dict[str, Any]:
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
        return manifest

    def abort(self) -> None:
        if self._cur is not None:
            self._cur.abort()
            self._cur = None
