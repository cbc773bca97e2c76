"""Checkpoints: ``checkpoints/step_<7-digit step>/{model.safetensors, state.pt, meta.json}``.

- ``model.safetensors``: the full model state (online weights, momentum copy, ITC queue and
  any other buffers), so a checkpoint is usable without the trainer.
- ``state.pt``: optimizer (keyed by parameter name, so DDP and FSDP runs share the format),
  scheduler, RNG states (python, numpy, torch, cuda), loader position and step. Only tensors
  and plain containers are stored, so it loads with ``torch.load(weights_only=True)`` (no
  pickled code runs on load).
- ``meta.json``: what the weights are compatible with (model config, vocab id, number of
  concepts); checked before any weight is touched. Written last into the staging dir, it also
  holds ``files``: the size and sha256 of ``model.safetensors`` and ``state.pt`` as written,
  so a resume can tell a good checkpoint from one truncated or bit-flipped later
  (``validate``; checkpoints from before the digests are checked by header and size only).

Paths come from ``mamo.run_dir`` (``RunDir``/``CheckpointDir``). Writes are atomic per
directory: everything goes to a hidden staging directory ``.tmp_<name>_<pid>`` beside the
target, which is renamed into place (an existing target is first renamed to ``.old_<name>_<pid>``),
so a SIGKILL at any moment leaves either the old set of checkpoints or the new one.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors.torch import load_model, save_file, save_model
from torch import nn

from mamo.core.files import output_error
from mamo.run_dir import META, STATE, WEIGHTS, CheckpointDir, RunDir, step_of

STAGING_PREFIXES = (".tmp_", ".old_")
log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used here (missing, corrupt or incompatible)."""


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first (staging dirs are ignored)."""
    root = RunDir(run_dir).checkpoints
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        step, ck = step_of(p), CheckpointDir(p)
        if step is not None and p.is_dir() and ck.state.is_file() and ck.weights.is_file():
            out.append((step, p))
    return sorted(out)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1][1] if ckpts else None


# ---------------------------------------------------------------- validation


def file_digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def _check_safetensors(path: Path) -> None:
    """The header parses and its tensors end exactly where the file does (a truncated or
    extended file fails here without reading the weights)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: truncated ({size} bytes, no safetensors header)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise CheckpointError(f"{path}: truncated (header of {n} bytes in a {size}-byte file)")
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header")
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        raise CheckpointError(f"{path}: {size} bytes, but its header describes {8 + n + end} (truncated?)")


def validate(ckpt_dir: str | Path, digests: bool = True) -> dict[str, Any]:
    """Raise ``CheckpointError`` (naming the file and what is wrong) unless the checkpoint
    dir looks loadable: meta.json parses, model.safetensors' header matches its size, state.pt
    is a complete archive, and (when meta.json has them and ``digests``) sizes and sha256 are
    the ones written at save time. Returns meta.json."""
    ck = CheckpointDir(Path(ckpt_dir))
    meta = read_meta(ck.path)
    files = meta.get("files") or {}
    for name, path in ((WEIGHTS, ck.weights), (STATE, ck.state)):
        if not path.is_file():
            raise CheckpointError(f"{path} is missing")
        want = files.get(name)
        if want and path.stat().st_size != want["bytes"]:
            raise CheckpointError(f"{path}: {path.stat().st_size} bytes, {want['bytes']} were written")
    _check_safetensors(ck.weights)
    if not zipfile.is_zipfile(ck.state):  # torch.save's archive; its directory sits at the end
        raise CheckpointError(f"{ck.state}: not a complete torch archive (truncated?)")
    if digests:
        for name, path in ((WEIGHTS, ck.weights), (STATE, ck.state)):
            want = files.get(name)
            if want and file_digest(path)["sha256"] != want["sha256"]:
                raise CheckpointError(f"{path}: sha256 differs from the one written at save time (corrupt)")
    return meta


def resumable_checkpoint(run_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint that validates, and the newer ones that did not (with why).

    Each rejected one is logged as a warning; an older good one is used instead."""
    rejected: list[tuple[Path, str]] = []
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            validate(path)
        except (CheckpointError, OSError) as e:
            reason = " ".join(str(e).split())
            log.warning("checkpoint %s is unusable, skipping it: %s", path, reason)
            rejected.append((path, reason))
            continue
        return path, rejected
    return None, rejected
# ---------------------------------------------------------------- RNG state (plain data only)


def rng_state() -> dict[str, Any]:
    """Every RNG the step may touch, as tensors/ints/lists (weights_only-loadable)."""
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": npst["bit_generator"],
            "state": {"key": npst["key"].numpy().astype(np.uint32), "pos": npst["pos"]},
            "has_gauss": npst["has_gauss"],
            "gauss": npst["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# ---------------------------------------------------------------- save / load


@dataclass
class Loaded:
    step: int
    state: dict[str, Any]  # the whole state.pt
    meta: dict[str, Any]
    path: Path


Weights = nn.Module | Mapping[str, torch.Tensor]


def _save_weights(weights: Weights, path: Path, step: Any) -> None:
    metadata = {"step": str(step), "format": "mamo-ckpt/1"}
    if isinstance(weights, nn.Module):
        # save_model handles tensors that share storage (tied weights) by keeping one name.
        save_model(weights, str(path), metadata=metadata)
    else:  # a full state dict gathered from sharded ranks (fsdp.full_state_dict)
        save_file({k: v.contiguous() for k, v in weights.items()}, str(path), metadata=metadata)


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: Weights,
    state: dict[str, Any],
    meta: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write ``checkpoints/step_<step>/`` atomically and prune to the newest ``keep_last``.

    ``model`` is the unwrapped module (no DDP/compile prefixes in the names) or its full
    state dict. ``state`` holds optimizer/scheduler/rng/loader/step (plain data and tensors only).
    """
    run = RunDir(run_dir)
    final = run.checkpoint(step)

    def write(tmp: Path) -> None:
        _save_weights(model, tmp / WEIGHTS, step)
        torch.save(state, tmp / STATE)
        # meta.json last, with the digests of the bytes as they reached the disk
        files = {name: file_digest(tmp / name) for name in (WEIGHTS, STATE)}
        (tmp / META).write_text(json.dumps({**meta, "step": step, "files": files}, indent=2,
                                           sort_keys=True) + "\n")

    _write_dir(final.path, write)
    prune(run_dir, keep_last)
    return final.path


def _write_dir(final: Path, write) -> None:
    """Stage ``write(tmp)`` in ``.tmp_<name>_<pid>``, fsync it and rename it onto ``final``."""
    tmp = final.parent / f".tmp_{final.name}_{os.getpid()}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        write(tmp)
        _fsync_dir_files(tmp)
    except BaseException as e:
        # a full or read-only disk: leave no staging dir behind (and never a complete-looking one)
        err = output_error(final, e) if isinstance(e, Exception) else None  # before space is freed
        shutil.rmtree(tmp, ignore_errors=True)
        if err is not None:
            raise err from e
        raise
    if final.exists():  # re-saving the same step (e.g. the last step after a resume)
        old = final.parent / f".old_{final.name}_{os.getpid()}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    _fsync(final.parent)


def prune(run_dir: str | Path, keep_last: int) -> None:
    ckpts = list_checkpoints(run_dir)
    for _, path in ckpts[: max(0, len(ckpts) - keep_last)]:
        shutil.rmtree(path, ignore_errors=True)
    # Leftovers of a writer that was killed mid-save.
    root = RunDir(run_dir).checkpoints
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(STAGING_PREFIXES) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)


def read_meta(ckpt_dir: str | Path) -> dict[str, Any]:
    path = CheckpointDir(Path(ckpt_dir)).meta
    if not path.is_file():
        raise CheckpointError(f"{ckpt_dir} is not a checkpoint (no {META})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is corrupt: {e}") from e


def check_compatible(meta: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    """Refuse weights built for another model preset or another concept vocabulary."""
    diff = _diff(meta.get("model", {}), expected.get("model", {}), "model")
    if diff:
        k, got, want = diff[0]
        raise CheckpointError(
            f"checkpoint {where} was made for another model ({k}: checkpoint {got!r}, config {want!r}"
            + (f"; {len(diff) - 1} more keys differ" if len(diff) > 1 else "")
            + ")"
        )
    for key in ("vocab_id", "num_concepts"):
        if meta.get(key) != expected.get(key):
            raise CheckpointError(
                f"checkpoint {where} was made for another concept vocabulary ({key}: checkpoint "
                f"{meta.get(key)!r}, data {expected.get(key)!r})"
            )


# Model settings that do not change which weights exist or what they mean.
NOT_WEIGHT_DEFINING = {"model.attn_impl", "model.text_init", "model.vision_init", "model.dropout"}


def _diff(a: Any, b: Any, prefix: str) -> list[tuple[str, Any, Any]]:
    """Leaves that differ between two nested dicts, as (dotted key, a's value, b's value)."""
    if prefix in NOT_WEIGHT_DEFINING:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}.{k}")
        return out
    return [] if a == b else [(prefix, a, b)]


def read_state(ckpt_dir: str | Path) -> dict[str, Any]:
    """``state.pt``: tensors and plain containers only (``weights_only``: no pickled code runs)."""
    return torch.load(CheckpointDir(Path(ckpt_dir)).state, map_location="cpu", weights_only=True)


def load_weights(model: nn.Module, ckpt_dir: str | Path) -> None:
    """Load a checkpoint dir's ``model.safetensors`` into a built ``model`` (every tensor must fit)."""
    path = CheckpointDir(Path(ckpt_dir)).weights
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    missing, unexpected = load_model(model, str(path), strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit the model: missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"
        )


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's full state keyed by parameter name (rank 0 gets it; a collective when
    the model is sharded). ``model`` is the unwrapped module."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load what :func:`optimizer_state` saved, whether ``model`` is sharded or not.

    Parameters without saved state (a head whose loss weight was 0) start fresh, as in a
    plain ``optimizer.load_state_dict``. Call before the first backward (no gradients yet).
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if any(isinstance(k, int) for k in state.get("state", {})) or any(
            isinstance(p, int) for g in state.get("param_groups", []) for p in g.get("params", [])):
        optimizer.load_state_dict(state)  # written before name keys (single process / DDP only)
        return
    set_optimizer_state_dict(model, optimizer, optim_state_dict=state,
                             options=StateDictOptions(full_state_dict=True, strict=False))
    for group in optimizer.param_groups:  # the name-keyed path hands tuples back as lists
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])


def load_checkpoint(ckpt_dir: str | Path, model: nn.Module, expected_meta: dict[str, Any]) -> Loaded:
    """Check compatibility, then load weights into ``model`` and return state.pt (not applied)."""
    ckpt_dir = Path(ckpt_dir)
    meta = read_meta(ckpt_dir)
    check_compatible(meta, expected_meta, str(ckpt_dir))
    load_weights(model, ckpt_dir)
    state = read_state(ckpt_dir)
    return Loaded(step=int(state["step"]), state=state, meta=meta, path=ckpt_dir)


def export_final(run_dir: str | Path, model: Weights, meta: dict[str, Any], config_yaml: str) -> Path:
    """``final/model.safetensors`` + ``final/config.yaml`` + ``final/meta.json``, atomically."""
    final = RunDir(run_dir).final

    def write(tmp: Path) -> None:
        _save_weights(model, tmp / WEIGHTS, meta.get("step", ""))
        (tmp / final.config.name).write_text(config_yaml)
        (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    _write_dir(final.path, write)
    return final.path


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_dir_files(d: Path) -> None:
    for p in d.iterdir():
        _fsync(p)
    _fsync(d)
