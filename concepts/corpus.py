"""Reading a dataset version for the concepts stage: its manifest and the captions of a shard.

Image shards are only ever read here, never written.
"""
from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"


def load_manifest(version_dir: str | Path) -> dict[str, Any]:
    """The validated manifest (through ``ingest.manifest`` when it is importable)."""
    try:
        from ingest.manifest import load_manifest as ingest_load_manifest
    except ImportError:  # the concepts stage also works beside an older ingest
        ingest_load_manifest = None
    if ingest_load_manifest is not None:
        return ingest_load_manifest(version_dir)
    path = Path(version_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {version_dir} (not a dataset version)")
    with open(path, encoding="utf-8") as f:
        m = json.load(f)
    if not isinstance(m, dict) or not isinstance(m.get("shards"), list):
        raise ValueError(f"{path}: a manifest needs a 'shards' list")
    return m


def manifest_sha256(version_dir: str | Path) -> str:
    """sha256 of manifest.json's bytes: the identity of the data a vocabulary was built from."""
    return hashlib.sha256((Path(version_dir) / MANIFEST_NAME).read_bytes()).hexdigest()


def shard_stem(shard: dict[str, Any]) -> str:
    """``"shards/00000.tar"`` -> ``"00000"`` (the annotation file has the same stem)."""
    return Path(shard["tar"]).stem


def read_shard_captions(tar_path: str | Path) -> list[tuple[str, bytes]]:
    """``(key, raw KEY.txt bytes)`` for every sample of a shard, in tar order.

    Bytes, not str: invalid UTF-8 must reach the extractor to be counted, not crash here.
    """
    out: list[tuple[str, bytes]] = []
    with tarfile.open(tar_path, "r:*") as tf:
        for member in tf:
            if not member.isreg():
                continue
            name = member.name.rsplit("/", 1)[-1]
            key, dot, ext = name.partition(".")
            if not dot or ext != "txt":
                continue
            f = tf.extractfile(member)
            out.append((key, f.read() if f is not None else b""))
    return out
