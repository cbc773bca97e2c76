"""Checks that run before any work and before anything is written.

A start that fails here raises ``StartError`` (one line, naming the key or file at fault); the
CLI prints it and exits with code 2. Nothing in an existing run directory is touched until
every check has passed.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mamo.core.config import ConfigError, to_dict
from mamo.trainer.checkpoint import CheckpointError, check_compatible, latest_checkpoint, read_meta
from mamo.trainer.config import RunConfig

CONFIG_FILE = "config.yaml"
DATA_VERSIONS_FILE = "data_versions.json"
# Sections that must not change when a run is resumed (they define the weights and the data
# stream); optim/train/run may change, e.g. to extend a run with more steps.
FROZEN_SECTIONS = ("model", "loss", "data")
# ...except these, which change speed or where things are, not the weights or the data stream.
# The data's identity is checked on what the paths resolve to instead: the manifest's sha256
# and the vocab id recorded in data_versions.json (so a moved dataset, or "latest" vs the id
# it named, still resumes, and a rebuilt vocabulary does not).
MAY_CHANGE_ON_RESUME = {"model.attn_impl", "model.text_init", "model.vision_init", "data.vocab_id",
                        "data.version_dir", "data.eval_version_dir", "data.num_threads", "data.num_workers",
                        "data.device_id", "data.decode", "data.backend"}


class StartError(RuntimeError):
    """The run cannot start; the message is one line and says what to fix."""


@dataclass
class RunDirState:
    run_dir: Path
    resume_from: Path | None  # the newest complete checkpoint, when resuming


def resolve_run_dir(cfg: RunConfig, run_dir: str | Path | None) -> Path:
    return Path(run_dir) if run_dir is not None else Path(cfg.run.dir) / cfg.run.name


def inspect_run_dir(run_dir: Path, resume: bool) -> RunDirState:
    """Decide between a fresh start and a resume, without writing anything.

    - no directory, or an empty one: fresh start (``--resume`` then is an error);
    - a directory with a complete checkpoint: resume from the newest (auto-resume);
    - a directory with files but no checkpoint: refused (it would be overwritten).
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise StartError(f"run dir {run_dir} exists and is not a directory")
    entries = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    ckpt = latest_checkpoint(run_dir) if entries else None
    if ckpt is not None:
        return RunDirState(run_dir, ckpt)
    if resume:
        raise StartError(f"--resume: no checkpoint to resume from in {run_dir}")
    if entries:
        raise StartError(
            f"run dir {run_dir} already holds {', '.join(entries[:4])} but no checkpoint; "
            "choose another --run-dir (or run.name) or remove it"
        )
    return RunDirState(run_dir, None)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_data(version_dir: Path, vocab_id: str) -> dict[str, Any]:
    """Dataset version, its concept vocabulary and every shard's annotations exist and agree.

    Returns what goes to ``data_versions.json``.
    """
    from concepts.store import ConceptStore
    from ingest.manifest import MANIFEST_NAME, load_manifest

    try:
        manifest = load_manifest(version_dir)
    except Exception as e:  # ManifestError, OSError: all mean "not a usable dataset version"
        raise StartError(f"dataset: {e}") from e
    manifest_sha = sha256_file(Path(version_dir) / MANIFEST_NAME)
    out = {
        "dataset": manifest["dataset"],
        "version": manifest["version"],
        "version_dir": str(version_dir),
        "manifest_sha256": manifest_sha,
        "samples": sum(s["samples"] for s in manifest["shards"]),
        "shards": len(manifest["shards"]),
        "vocab_id": None,
        "num_concepts": 0,
    }
    if vocab_id == "none":  # no concept labels wanted (MLM ablation)
        return out
    try:
        store = ConceptStore(version_dir, vocab_id)
    except Exception as e:
        raise StartError(f"concepts: {e}") from e
    meta_manifest = store.meta.get("manifest_sha256")
    if meta_manifest is not None and meta_manifest != manifest_sha:
        raise StartError(
            f"concepts: vocabulary {store.vocab_id} was built for another manifest of "
            f"{version_dir} (manifest_sha256 {meta_manifest[:12]} != {manifest_sha[:12]}); re-run concepts"
        )
    for shard in manifest["shards"]:
        stem = Path(shard["tar"]).stem
        path = store.annotation_path(stem)
        if not path.is_file():
            raise StartError(
                f"concepts: no annotations for shard {stem} in vocabulary {store.vocab_id} "
                f"({path}); run `python -m concepts annotate {version_dir}`"
            )
        with open(path, "rb") as f:  # count lines fast: this runs over every shard at start
            lines, last = 0, b"\n"
            for chunk in iter(lambda: f.read(1 << 20), b""):
                lines, last = lines + chunk.count(b"\n"), chunk[-1:]
            lines += last != b"\n"  # a last line without its newline
        if lines != shard["samples"]:
            raise StartError(
                f"concepts: {path} has {lines} annotations for a shard of {shard['samples']} samples"
            )
    return {**out, "vocab_id": store.vocab_id, "num_concepts": store.num_concepts}


def _first_diff(a: Any, b: Any, prefix: str) -> str | None:
    if prefix in MAY_CHANGE_ON_RESUME:
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_diff(a.get(k), b.get(k), f"{prefix}.{k}")
            if d:
                return d
        return None
    return None if a == b else prefix


def check_resume(run_dir: Path, cfg: RunConfig, data_versions: dict[str, Any], expected_meta: dict[str, Any],
                 ckpt: Path) -> None:
    """The run being resumed used the same model, losses, data stream and data version."""
    saved_cfg_path = run_dir / CONFIG_FILE
    if saved_cfg_path.is_file():
        saved = yaml.safe_load(saved_cfg_path.read_text(encoding="utf-8")) or {}
        now = to_dict(cfg)
        for section in FROZEN_SECTIONS:
            key = _first_diff(saved.get(section), now.get(section), section)
            if key:
                raise StartError(
                    f"config key '{key}': differs from the run being resumed in {run_dir} "
                    "(start a new run instead)"
                )
    saved_dv_path = run_dir / DATA_VERSIONS_FILE
    if saved_dv_path.is_file():
        saved_dv = json.loads(saved_dv_path.read_text(encoding="utf-8"))
        for key in ("dataset", "version", "manifest_sha256", "vocab_id"):
            if saved_dv.get(key) != data_versions.get(key):
                raise StartError(
                    f"data: {key} is {data_versions.get(key)!r} but the run in {run_dir} was "
                    f"trained on {saved_dv.get(key)!r}"
                )
    check_checkpoint(ckpt, expected_meta)


def check_checkpoint(ckpt: Path, expected_meta: dict[str, Any]) -> dict[str, Any]:
    try:
        meta = read_meta(ckpt)
        check_compatible(meta, expected_meta, str(ckpt))
    except CheckpointError as e:
        raise StartError(str(e)) from e
    return meta


def describe_error(e: BaseException) -> str:
    """One line for stderr."""
    msg = str(e) if isinstance(e, (ConfigError, StartError)) else f"{type(e).__name__}: {e}"
    return " ".join(msg.split())
