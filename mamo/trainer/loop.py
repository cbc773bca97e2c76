"""The training loop: one plain loop over optimizer steps.

    prepare(cfg, run_dir, resume)   every check, nothing written  (StartError on failure)
    train(prepared)                 set up, resume, loop, checkpoint, export

Reproducibility: the per-step masking / hard-negative seed is a function of
(train.seed, step, micro-batch, rank), never of how much global RNG was consumed before; the
loader's order is a function of (data.seed, epoch) and its position is one integer; the
checkpoint carries every RNG state. A run killed mid-epoch and resumed therefore logs the same
per-step losses as an uninterrupted one (on CPU, same thread count).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from mamo.core.config import to_dict
from mamo.trainer import checkpoint as ckpt
from mamo.trainer.config import RunConfig
from mamo.trainer.distributed import (
    DistInfo,
    all_reduce_mean,
    any_rank,
    barrier,
    cleanup,
    gather_digests,
    init_distributed,
    no_grad_sync,
    preflight_world_size,
    wrap_ddp,
)
from mamo.trainer.activation_checkpointing import checkpoint_blocks
from mamo.trainer.fsdp import average_replicated_grads, shard_model, weights_to_save
from mamo.trainer.metrics import MetricsLogger, truncate_after
from mamo.trainer.optim import build_optimizer, build_scheduler
from mamo.trainer.preflight import (
    CONFIG_FILE,
    DATA_VERSIONS_FILE,
    StartError,
    check_checkpoint,
    check_data,
    check_resume,
    inspect_run_dir,
)

EXIT_NONFINITE = 3


class TrainingAborted(RuntimeError):
    """Too many non-finite steps in a row; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------- helpers


def step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """Seed of the step's random choices (masks, hard negatives): a pure function of its
    position, so a resumed run draws exactly what the uninterrupted run drew."""
    digest = hashlib.blake2b(f"{seed}:{step}:{micro}:{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def _scalar(v: Any) -> float | None:
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return float(v.detach().float().item())
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return None


def temperature_of(model: nn.Module) -> float | None:
    for name in ("temperature", "temp"):
        t = getattr(model, name, None)
        if callable(t) and not isinstance(t, torch.Tensor):
            t = t()
        if isinstance(t, torch.Tensor) and t.numel() == 1:
            return float(t.detach().float().item())
    return None


class StopRequest:
    """SIGTERM (a scheduler's preemption) or Ctrl-C: finish the step, checkpoint, exit.

    A second Ctrl-C interrupts at once.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# ----------------------------------------------------------------------------- data stream


class BatchStream:
    """Batches across epoch boundaries. The loader advances its own epoch when an iteration
    ends, and its ``state_dict`` (epoch, batch) is the whole position of the stream."""

    def __init__(self, loader, loader_state: Any = None):
        self.loader = loader
        if loader_state is not None:
            self.loader.load_state_dict(loader_state)
        self._it: Iterator | None = None

    @property
    def epoch(self) -> int:
        return int(self.loader.epoch)

    def next(self) -> dict[str, Any]:
        for _ in range(2):  # at most one epoch change per call
            if self._it is None:
                self._it = iter(self.loader)
            try:
                return next(self._it)
            except StopIteration:
                self._it = None
        raise RuntimeError("the loader yields no batch in a whole epoch (data.batch_size larger than the data?)")

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()


def batches_per_epoch(loader) -> int:
    try:
        return len(loader)
    except TypeError as e:  # pragma: no cover - the loader contract has __len__
        raise StartError("train.steps=0 needs a loader with a length to count epochs") from e


# ----------------------------------------------------------------------------- preparation


@dataclass
class Prepared:
    cfg: RunConfig
    run_dir: Path
    resume_from: Path | None
    data_versions: dict[str, Any]
    expected_meta: dict[str, Any]
    total_steps: int
    loader: Any  # the epoch-0 loader built while checking (reused for a fresh start)
    config_yaml: str
    world_size: int
    notes: list[str] = field(default_factory=list)


def prepare(cfg: RunConfig, run_dir: Path, resume: bool = False) -> Prepared:
    """Every check that can fail before the first step; writes nothing."""
    rank, world_size = preflight_world_size()
    state = inspect_run_dir(run_dir, resume)
    try:
        version_dir = cfg.data.version_for("train")
    except Exception as e:
        raise StartError(str(e)) from e
    data_versions = check_data(version_dir, cfg.data.vocab_id)
    try:
        from mamo.data import build_loader

        loader = build_loader(cfg.data, split="train", rank=rank, world_size=world_size, epoch=0)
    except Exception as e:
        raise StartError(f"data: cannot build the train loader: {' '.join(str(e).split())}") from e
    if loader.vocab_id != data_versions["vocab_id"]:
        raise StartError(f"data: loader reads vocabulary {loader.vocab_id}, checked {data_versions['vocab_id']}")
    per_epoch = batches_per_epoch(loader) // cfg.train.grad_accum
    if per_epoch < 1:
        raise StartError(
            f"config key 'data.batch_size': {cfg.data.batch_size} x train.grad_accum={cfg.train.grad_accum} "
            f"x {world_size} ranks is more than one epoch of {data_versions['samples']} samples"
        )
    total = cfg.train.steps or cfg.train.epochs * per_epoch
    data_versions = {**data_versions, "steps_per_epoch": per_epoch}
    expected_meta = {
        "model": to_dict(cfg.model),
        "vocab_id": data_versions["vocab_id"],
        "num_concepts": loader.concept_vocab_size,
        "world_size": world_size,
    }
    notes = []
    if cfg.train.parallel == "fsdp" and world_size == 1:
        notes.append("train.parallel=fsdp in a single process: nothing to shard, the model runs unwrapped "
                     "(launch with torchrun --nproc_per_node N to shard it)")
    if state.resume_from is not None:
        check_resume(run_dir, cfg, data_versions, expected_meta, state.resume_from)
        saved_ws = ckpt.read_meta(state.resume_from).get("world_size", world_size)
        if saved_ws != world_size and not cfg.train.elastic_resume:
            raise StartError(
                f"checkpoint {state.resume_from} was written by {saved_ws} processes; resume with the "
                f"same number (now {world_size}) so the data order continues exactly, or set "
                "train.elastic_resume=true to continue from the next epoch"
            )
        try:
            resume_state = torch.load(state.resume_from / ckpt.STATE, map_location="cpu", weights_only=True)
            if saved_ws == world_size:
                loader.load_state_dict(resume_state["data_by_rank"][rank])
            else:
                notes.append(_restart_data_at_next_epoch(loader, resume_state["data_by_rank"], saved_ws, world_size))
        except Exception as e:  # corrupt state.pt, or a position from other data/batch size
            raise StartError(f"checkpoint {state.resume_from}: cannot continue from it: {' '.join(str(e).split())}") from e
        notes.append(f"resuming from {state.resume_from} (step {resume_state['step']}, epoch {loader.epoch})")
    if cfg.train.init_from:
        check_checkpoint(Path(cfg.train.init_from), expected_meta)
    if cfg.train.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise StartError("config key 'train.tensorboard': needs the `tensorboard` package (pip install tensorboard)")
    config_yaml = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    return Prepared(cfg, run_dir, state.resume_from, data_versions, expected_meta, total, loader,
                    config_yaml, world_size, notes)


def _restart_data_at_next_epoch(loader, saved: list[dict[str, Any]], saved_ws: int, world_size: int) -> str:
    """Position ``loader`` for an elastic resume and say what was skipped.

    The per-rank order is cut by world size, so another world size cannot continue inside an
    epoch: it starts the next one (or the saved one, when that had not begun)."""
    epoch = max(int(s["epoch"]) for s in saved)
    skipped = max(int(s["batch"]) for s in saved if int(s["epoch"]) == epoch)
    if skipped:
        epoch += 1
    loader.set_epoch(epoch)
    what = (f"the rest of epoch {epoch - 1} is skipped (each of the {saved_ws} ranks had read {skipped} batches)"
            if skipped else "the interrupted run had just finished an epoch, nothing is skipped")
    return f"train.elastic_resume: {saved_ws} -> {world_size} processes; data restarts at epoch {epoch}; {what}"


# ----------------------------------------------------------------------------- training


def build_model(cfg: RunConfig, num_concepts: int) -> nn.Module:
    from mamo.model import MAMO

    return MAMO(cfg.model, cfg.loss, num_concepts)


def compile_blocks(model: nn.Module, mode: str = "default") -> int:
    """``torch.compile`` every transformer block in place (torchtitan-style, per block).

    The top-level forward draws masks from generators, samples hard negatives and all-gathers
    features: a whole-model graph would break there and recompile often. The blocks hold
    nearly all the FLOPs and are identical in shape, so one compiled graph serves them all,
    online and momentum copies alike. Returns the number of blocks compiled.
    """
    from mamo.model.transformer import transformer_blocks

    blocks = transformer_blocks(model)
    for block in blocks:
        block.compile(mode=mode)
    return len(blocks)


def _write_run_files(p: Prepared) -> None:
    p.run_dir.mkdir(parents=True, exist_ok=True)
    (p.run_dir / CONFIG_FILE).write_text(p.config_yaml, encoding="utf-8")
    (p.run_dir / DATA_VERSIONS_FILE).write_text(json.dumps(p.data_versions, indent=2) + "\n", encoding="utf-8")


def _find_unused(cfg: RunConfig) -> bool:
    if cfg.train.ddp_find_unused is not None:
        return cfg.train.ddp_find_unused
    lc = cfg.loss
    # A zero weight leaves its head without gradient: DDP must be told.
    return any(w == 0 for w in (lc.w_itc, lc.w_itm, lc.w_mmm, lc.lambda_v, lc.lambda_t)) or lc.text_target == "none"


def train(p: Prepared, progress: bool = True) -> int:
    """Run (or continue) training; returns the process exit code."""
    cfg, tc = p.cfg, p.cfg.train
    info = init_distributed(tc.device)
    try:
        return _train(p, info, progress)
    finally:
        cleanup(info)


def _train(p: Prepared, info: DistInfo, progress: bool) -> int:
    cfg, tc = p.cfg, p.cfg.train
    device = info.device
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    seed_everything(tc.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    sharded = info.distributed and tc.parallel == "fsdp"
    try:
        model = build_model(cfg, p.expected_meta["num_concepts"]).to(device)
        if cfg.train.init_from and p.resume_from is None:
            ckpt.load_weights(model, cfg.train.init_from)  # online, momentum copy and queue
        loaded = ckpt.load_checkpoint(p.resume_from, model, p.expected_meta) if p.resume_from is not None else None
        # torchtitan's order: activation checkpointing, then compile, then sharding.
        if tc.activation_checkpointing:
            checkpoint_blocks(model)
        if tc.compile:
            compile_blocks(model, tc.compile_mode)
        # FSDP swaps parameters for sharded DTensors: the optimizer is built after it.
        replicated = shard_model(model, info) if sharded else []
        optimizer = build_optimizer(model, cfg.optim)
        scheduler = build_scheduler(optimizer, cfg.optim, p.total_steps)
        start_step = 0
        if loaded is not None:
            st = loaded.state
            ckpt.load_optimizer_state(model, optimizer, st["optimizer"])
            scheduler.load_state_dict(st["scheduler"])
            rngs = st["rng_by_rank"]  # one per saved rank (fewer after an elastic resume)
            ckpt.set_rng_state(rngs[info.rank % len(rngs)])
            start_step = loaded.step
    except (ckpt.CheckpointError, ValueError, KeyError, RuntimeError, OSError) as e:
        # Still nothing written: report it like any other failed start.
        raise StartError(f"cannot set up the model/optimizer: {' '.join(str(e).split())}") from e

    # From here on the run dir is ours to write (every check has passed).
    if info.is_main:
        _write_run_files(p)
        truncate_after(p.run_dir / "metrics.jsonl", start_step)
    barrier(info)
    logger = MetricsLogger(p.run_dir, enabled=info.is_main, tensorboard=tc.tensorboard)

    # With FSDP the sharded module is its own wrapper; DDP wraps (single process: identity).
    ddp_model = model if sharded else wrap_ddp(model, info, _find_unused(cfg))
    stream = BatchStream(p.loader)  # already positioned by prepare() when resuming
    bar = tqdm(total=p.total_steps, initial=start_step, disable=not (progress and info.is_main),
               unit="step", dynamic_ncols=True, file=sys.stderr)
    for note in p.notes:
        if info.is_main:
            tqdm.write(note, file=sys.stderr)

    stop = StopRequest()
    try:
        return _loop(p, info, model, ddp_model, optimizer, scheduler, stream, bar, logger, stop, start_step,
                     progress, replicated)
    finally:
        stop.restore()


def _loop(p: Prepared, info: DistInfo, model, ddp_model, optimizer, scheduler, stream: BatchStream, bar, logger,
          stop: StopRequest, step: int, progress: bool, replicated: list) -> int:
    """Optimizer steps from ``step`` to the end; checkpoints, the final export. Returns the exit code."""
    cfg, tc = p.cfg, p.cfg.train
    device = info.device
    amp_dtype = autocast_dtype(tc.precision, device)
    params = [q for q in model.parameters() if q.requires_grad]
    samples_per_step = cfg.data.batch_size * tc.grad_accum * info.world_size
    bad_in_a_row = 0
    ema_sps = None
    while step < p.total_steps:
        t_start = time.perf_counter()
        data_wait = 0.0
        model.train()
        optimizer.zero_grad(set_to_none=True)
        terms: dict[str, float] = {}
        for micro in range(tc.grad_accum):
            t0 = time.perf_counter()
            batch = to_device(stream.next(), device)
            data_wait += time.perf_counter() - t0
            last = micro == tc.grad_accum - 1
            # Gradients are all-reduced once per optimizer step, on the last micro-batch.
            sync = contextlib.nullcontext() if (last or not info.distributed) else no_grad_sync(ddp_model)
            with sync:
                with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                    out = ddp_model(batch, generator_seed=step_seed(tc.seed, step, micro, info.rank))
                (out["loss"] / tc.grad_accum).backward()
            for k, v in out.items():
                s = _scalar(v)
                if s is not None:
                    terms[k] = terms.get(k, 0.0) + s / tc.grad_accum
        average_replicated_grads(replicated, info)  # FSDP leaves 0-dim parameters to us
        max_norm = cfg.optim.clip_grad_norm if cfg.optim.clip_grad_norm > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        lr = optimizer.param_groups[0]["lr"]
        nonfinite = any_rank(not (math.isfinite(terms.get("loss", float("nan"))) and math.isfinite(grad_norm)), info)
        if nonfinite:
            # Skip the update entirely; the schedule still advances with the step count.
            optimizer.zero_grad(set_to_none=True)
            bad_in_a_row += 1
            if info.is_main:
                tqdm.write(f"warning: step {step + 1}: non-finite loss or gradient; update skipped "
                           f"({bad_in_a_row}/{tc.max_nonfinite} in a row)", file=sys.stderr)
        else:
            optimizer.step()
            model.momentum_update()  # EMA on the unwrapped module, after every optimizer step
            bad_in_a_row = 0
        scheduler.step()
        step += 1

        step_time = time.perf_counter() - t_start
        terms = all_reduce_mean(terms, info)
        sps = samples_per_step / max(step_time, 1e-9)
        ema_sps = sps if ema_sps is None else 0.9 * ema_sps + 0.1 * sps
        temp = terms.pop("temp", None)  # the model reports its ITC temperature as "temp"
        record = {
            **terms,
            "lr": lr,
            "temperature": temp if temp is not None else temperature_of(model),
            "grad_norm": grad_norm,
            "samples_per_s": sps,
            "data_wait_share": data_wait / max(step_time, 1e-9),
            "step_time_s": step_time,
            "epoch": stream.epoch,
            "skipped": nonfinite,
        }
        logger.log(step, record)
        bar.update(1)
        bar.set_postfix(loss=f"{terms.get('loss', float('nan')):.4f}", sps=f"{ema_sps:.1f}", lr=f"{lr:.2e}", refresh=False)
        if info.is_main and (step % tc.log_every == 0 or step == p.total_steps) and not progress:
            print(f"step {step}/{p.total_steps} loss {terms.get('loss', float('nan')):.4f} "
                  f"lr {lr:.2e} {sps:.1f} samples/s", file=sys.stderr, flush=True)

        if bad_in_a_row >= tc.max_nonfinite:
            bar.close()
            logger.close()
            last_ckpt = ckpt.latest_checkpoint(p.run_dir)
            raise TrainingAborted(
                f"{bad_in_a_row} non-finite steps in a row (train.max_nonfinite={tc.max_nonfinite}); "
                f"stopped at step {step}, last good checkpoint: {last_ckpt or 'none'}"
            )
        # No checkpoint during a non-finite streak: the last one written stays the last good one.
        stopping = any_rank(stop.signum is not None, info)
        if bad_in_a_row == 0 and ((tc.ckpt_every and step % tc.ckpt_every == 0) or step == p.total_steps or stopping):
            _save(p, info, model, optimizer, scheduler, stream, step)
        if stopping and step < p.total_steps:
            bar.close()
            logger.close()
            if info.is_main:
                print(f"stopped by signal at step {step}; checkpoint written, run again (or --resume) to continue",
                      file=sys.stderr, flush=True)
            return 128 + (stop.signum or signal.SIGTERM)

    bar.close()
    logger.close()
    digests = gather_digests(model, info)
    weights = weights_to_save(model)  # a collective when sharded
    if info.is_main:
        meta = {**p.expected_meta, "step": step, "data_versions": p.data_versions}
        final = ckpt.export_final(p.run_dir, weights, meta, p.config_yaml)
        if info.distributed:
            # Proof that DDP (FSDP: the replicated part) kept every rank's weights, momentum
            # copy and queue identical.
            (final / "rank_digests.json").write_text(json.dumps(digests, indent=2) + "\n")
        print(f"done: {step} steps; final weights in {final}", file=sys.stderr, flush=True)
    if info.distributed and len(set(digests)) != 1:
        raise RuntimeError(f"ranks diverged: state digests {digests}")
    barrier(info)
    return 0


def _save(p: Prepared, info: DistInfo, model, optimizer, scheduler, stream: BatchStream, step: int) -> None:
    # Every rank's RNG and loader position (they differ per rank); rank 0 writes. Sharded
    # weights and optimizer state are gathered to rank 0 first (collectives: every rank).
    weights = weights_to_save(model)
    optim_state = ckpt.optimizer_state(model, optimizer)
    rng = ckpt.rng_state()
    data = stream.state_dict()
    if info.distributed:
        import torch.distributed as dist

        rngs: list = [None] * info.world_size
        datas: list = [None] * info.world_size
        dist.all_gather_object(rngs, rng)
        dist.all_gather_object(datas, data)
    else:
        rngs, datas = [rng], [data]
    if info.is_main:
        state = {
            "step": step,
            "optimizer": optim_state,
            "scheduler": scheduler.state_dict(),
            "rng_by_rank": rngs,
            "data_by_rank": datas,
        }
        ckpt.save_checkpoint(p.run_dir, step, weights, state, p.expected_meta, p.cfg.train.keep_last)
    barrier(info)
