"""Checks that run before any work and before anything is written.

    prepare(cfg, run_dir, resume) -> Prepared    every check of a pre-training start

A start that fails here raises ``StartError`` (one line, naming the key or file at fault); the
CLI prints it and exits with code 2. Nothing in an existing run directory is touched until
every check has passed.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mamo.core.cli import UserError
from mamo.core.config import to_dict
from mamo.core.lock import LOCK_NAME
from mamo.run_dir import RunDir
from mamo.trainer.checkpoint import CheckpointError, check_compatible, read_meta, read_state, resumable_checkpoint
from mamo.trainer.config import RunConfig
# Sections that must not change when a run is resumed (they define the weights and the data
# stream); optim/train/run may change, e.g. to extend a run with more steps.
FROZEN_SECTIONS = ("model", "loss", "data")
# ...except these, which change speed or where things are, not the weights or the data stream.
# The data's identity is checked on what the paths resolve to instead: the manifest's sha256
# and the vocab id recorded in data_versions.json (so a moved dataset, or "latest" vs the id
# it named, still resumes, and a rebuilt vocabulary does not).
MAY_CHANGE_ON_RESUME = {"model.attn_impl", "model.text_init", "model.vision_init", "data.vocab_id",
                        "data.version_dir", "data.eval_version_dir", "data.num_threads", "data.num_workers",
                        "data.device_id", "data.decode", "data.backend", "data.verify", "data.on_corrupt"}


class StartError(UserError):
    """The run cannot start; the message is one line and says what to fix."""


@dataclass
class RunDirState:
    run_dir: Path
    resume_from: Path | None  # the newest checkpoint that validates, when resuming
    rejected: list[tuple[Path, str]] = field(default_factory=list)  # newer ones that did not, and why


def resolve_run_dir(cfg: RunConfig, run_dir: str | Path | None) -> Path:
    return Path(run_dir) if run_dir is not None else Path(cfg.run.dir) / cfg.run.name


def inspect_run_dir(run_dir: Path, resume: bool) -> RunDirState:
    """Decide between a fresh start and a resume, without writing anything.

    - no directory, or an empty one: fresh start (``--resume`` then is an error);
    - a directory with a complete checkpoint: resume from the newest that validates
      (``checkpoint.validate``: header, sizes, digests), with a warning naming each newer one
      that does not (auto-resume);
    - checkpoints, none of them loadable: refused (one line naming them);
    - a directory with files but no checkpoint: refused (it would be overwritten).
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise StartError(f"run dir {run_dir} exists and is not a directory")
    # the writer's lock file (mamo.core.lock) alone does not make a run dir "used"
    entries = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_NAME) if run_dir.is_dir() else []
    ckpt, rejected = resumable_checkpoint(run_dir) if entries else (None, [])
    if ckpt is not None:
        return RunDirState(run_dir, ckpt, rejected)
    if rejected:
        raise StartError(f"no loadable checkpoint in {run_dir}: "
                         + "; ".join(f"{p.name}: {why}" for p, why in rejected))
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
    saved_cfg_path = RunDir(run_dir).config
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
    saved_dv_path = RunDir(run_dir).data_versions
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


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


# ----------------------------------------------------------------------------- pre-training start


@dataclass
class Prepared:
    """A pre-training run that passed every start check (nothing written yet)."""

    cfg: RunConfig
    run_dir: Path
    resume_from: Path | None
    data_versions: dict[str, Any]
    expected_meta: dict[str, Any]  # what every checkpoint's meta.json says (and is checked against)
    total_steps: int
    loader: Any  # built while checking; positioned at the resume point, reused for training
    config_yaml: str
    world_size: int
    notes: list[str] = field(default_factory=list)


def prepare(cfg: RunConfig, run_dir: Path, resume: bool = False) -> Prepared:
    """Every check that can fail before the first step; writes nothing."""
    from mamo.trainer.distributed import preflight_world_size
    from mamo.trainer.parallelize import check_compile_scope

    rank, world_size = preflight_world_size()
    check_compile_scope(cfg.train, world_size)  # a ConfigError: one line, exit 2
    state = inspect_run_dir(run_dir, resume)
    try:
        version_dir = cfg.data.version_for("train")
    except Exception as e:
        raise StartError(str(e)) from e
    data_versions = check_data(version_dir, cfg.data.vocab_id)
    loader = _build_loader(cfg, rank, world_size)
    if loader.vocab_id != data_versions["vocab_id"]:
        raise StartError(f"data: loader reads vocabulary {loader.vocab_id}, checked {data_versions['vocab_id']}")
    per_epoch = len(loader) // cfg.train.grad_accum
    if per_epoch < 1:
        raise StartError(
            f"config key 'data.batch_size': {cfg.data.batch_size} x train.grad_accum={cfg.train.grad_accum} "
            f"x {world_size} ranks is more than one epoch of {data_versions['samples']} samples"
        )
    data_versions = {**data_versions, "steps_per_epoch": per_epoch}
    left_out = loader.index.left_out
    if left_out:  # data.on_corrupt=skip: trained without them, and said so
        data_versions.update(samples=len(loader.index), shards_left_out=left_out)
    expected_meta = {
        "model": to_dict(cfg.model),
        "vocab_id": data_versions["vocab_id"],
        "num_concepts": loader.concept_vocab_size,
        "world_size": world_size,
    }
    notes = [f"data: left out {len(left_out)} corrupt shard(s) (data.on_corrupt=skip): "
             + "; ".join(f"{x['tar']} ({x['reason']})" for x in left_out)] if left_out else []
    if cfg.train.parallel == "fsdp" and world_size == 1:
        notes.append("train.parallel=fsdp in a single process: nothing to shard, the model runs unwrapped "
                     "(launch with torchrun --nproc_per_node N to shard it)")
    notes += [f"checkpoint {p} is unusable ({why}); resuming from an older one" for p, why in state.rejected]
    if state.resume_from is not None:
        check_resume(run_dir, cfg, data_versions, expected_meta, state.resume_from)
        notes += _position_for_resume(loader, state.resume_from, cfg, rank, world_size)
    if cfg.train.init_from:
        check_checkpoint(Path(cfg.train.init_from), expected_meta)
    if cfg.train.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise StartError("config key 'train.tensorboard': needs the `tensorboard` package (pip install tensorboard)")
    return Prepared(cfg, run_dir, state.resume_from, data_versions, expected_meta,
                    cfg.train.steps or cfg.train.epochs * per_epoch, loader,
                    yaml.safe_dump(to_dict(cfg), sort_keys=False), world_size, notes)


def _build_loader(cfg: RunConfig, rank: int, world_size: int) -> Any:
    try:
        from mamo.data import build_loader

        return build_loader(cfg.data, split="train", rank=rank, world_size=world_size, epoch=0)
    except UserError:  # a corrupt shard: its own line names it
        raise
    except Exception as e:
        raise StartError(f"data: cannot build the train loader: {one_line(e)}") from e


def _position_for_resume(loader: Any, ckpt: Path, cfg: RunConfig, rank: int, world_size: int) -> list[str]:
    """Put ``loader`` where the checkpoint's rank stopped (another world size: at the next
    epoch, with ``train.elastic_resume``); returns the notes for the start lines."""
    from mamo.trainer.batching import restart_at_next_epoch

    saved_ws = read_meta(ckpt).get("world_size", world_size)
    if saved_ws != world_size and not cfg.train.elastic_resume:
        raise StartError(
            f"checkpoint {ckpt} was written by {saved_ws} processes; resume with the "
            f"same number (now {world_size}) so the data order continues exactly, or set "
            "train.elastic_resume=true to continue from the next epoch"
        )
    notes = []
    try:
        state = read_state(ckpt)
        if saved_ws == world_size:
            loader.load_state_dict(state["data_by_rank"][rank])
        else:
            notes.append(restart_at_next_epoch(loader, state["data_by_rank"], saved_ws, world_size))
    except Exception as e:  # corrupt state.pt, or a position from other data/batch size
        raise StartError(f"checkpoint {ckpt}: cannot continue from it: {one_line(e)}") from e
    notes.append(f"resuming from {ckpt} (step {state['step']}, epoch {loader.epoch})")
    return notes
