"""The dataset version's identity: ``manifest.json`` (format ``mamo-wds/1``).

Written last and atomically (``mamo.core.files``, with fsync), so a directory with a valid
manifest is a complete version. ``load_manifest`` is the one reader of manifests: every stage
calls it (and so gets a validated manifest) before it reads shards.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from mamo.core.files import write_json

FORMAT = "mamo-wds/1"
COUNT_KEYS = ("input", "written", "failed", "filtered", "duplicate")
MANIFEST_NAME = "manifest.json"


class ManifestError(ValueError):
    """The manifest is missing or does not follow the format."""


def software_versions() -> dict[str, str]:
    out = {}
    for name, dist in (("mamo", "mamo-pipeline"), ("img2dataset", "img2dataset"),
                       ("webdataset", "webdataset"), ("pillow", "pillow"),
                       ("nvidia-dali", "nvidia-dali-cuda130")):
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            if name == "mamo":
                out[name] = "0.1.0"
    return out


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def build_manifest(dataset: str, version: str, source: dict[str, Any], params: dict[str, Any],
                   counts: dict[str, int], shards: list[dict[str, Any]],
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    m = {"format": FORMAT, "dataset": dataset, "version": version, "created": utc_now(),
         "software": software_versions(), "source": source, "params": params,
         "counts": {k: int(counts.get(k, 0)) for k in COUNT_KEYS}, "shards": shards}
    # reasons and other details (e.g. counts.failed_reasons) ride along under "accounting"
    if extra:
        m.update(extra)
    validate_manifest(m)
    return m


def write_manifest(version_dir: str | Path, manifest: dict[str, Any]) -> Path:
    validate_manifest(manifest)
    return write_json(Path(version_dir) / MANIFEST_NAME, manifest, indent=1, fsync=True)


def validate_manifest(m: Any, where: str = "manifest") -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ManifestError(f"{where}: {msg}")

    need(isinstance(m, dict), "must be a JSON object")
    need(m.get("format") == FORMAT, f"format must be {FORMAT!r}, got {m.get('format')!r}")
    for k in ("dataset", "version", "created"):
        need(isinstance(m.get(k), str) and m[k] != "", f"'{k}' must be a non-empty string")
    for k in ("software", "source", "params", "counts"):
        need(isinstance(m.get(k), dict), f"'{k}' must be an object")
    counts = m["counts"]
    for k in COUNT_KEYS:
        need(isinstance(counts.get(k), int) and counts[k] >= 0,
             f"counts.{k} must be a non-negative integer")
    need(counts["written"] + counts["failed"] + counts["filtered"] + counts["duplicate"]
         == counts["input"], "counts do not add up: written + failed + filtered + duplicate "
         f"!= input ({counts})")
    shards = m.get("shards")
    need(isinstance(shards, list), "'shards' must be a list")
    total = 0
    for i, s in enumerate(shards):
        need(isinstance(s, dict), f"shards[{i}] must be an object")
        for k in ("tar", "index", "sha256"):
            need(isinstance(s.get(k), str) and s[k] != "", f"shards[{i}].{k} must be a string")
        for k in ("samples", "bytes"):
            need(isinstance(s.get(k), int) and s[k] >= 0, f"shards[{i}].{k} must be an integer")
        need(not Path(s["tar"]).is_absolute() and ".." not in Path(s["tar"]).parts,
             f"shards[{i}].tar must be a relative path inside the version")
        total += s["samples"]
    need(total == counts["written"], f"shard samples ({total}) != counts.written "
         f"({counts['written']})")


def load_manifest(version_dir: str | Path) -> dict[str, Any]:
    """Read and validate ``<version_dir>/manifest.json``."""
    path = Path(version_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"no {MANIFEST_NAME} in {version_dir} (not a complete dataset "
                            "version; was ingest interrupted?)")
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON: {e}") from e
    validate_manifest(m, str(path))
    return m


def manifest_sha256(version_dir: str | Path) -> str:
    """sha256 of ``manifest.json``'s bytes: the identity of a version's data (what concept
    vocabularies and training runs record)."""
    return hashlib.sha256((Path(version_dir) / MANIFEST_NAME).read_bytes()).hexdigest()
