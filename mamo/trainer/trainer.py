"""The training loop of pre-training and fine-tuning alike.

    trainer = Trainer(job, train_cfg, optim_cfg, info)   # parallelise, optimizer, resume
    trainer.train()                                      # train_step() until the last step

A ``TrainingJob`` brings what is specific to a run: the model (its ``forward(batch, seed)``
returns ``{"loss": ..., <scalar terms>}``; an optional ``momentum_update()`` runs after every
optimizer step), the batches, the run dir and the checkpoint metadata. The ``Trainer`` does
the rest, the same way for every job: AdamW groups and the warm-up + cosine schedule
(``optim``), gradient accumulation, mixed precision, clipping, non-finite steps skipped,
DDP/FSDP (``parallelize``), metrics, checkpoints with every RNG and data position, exact
resume, and a clean stop on SIGTERM/Ctrl-C.

Reproducibility: the per-step seed is a function of (train.seed, step, micro-batch, rank)
(``seeding.step_seed``), the stream's position is part of the checkpoint, the checkpoint carries
every RNG state: a run killed and resumed logs the per-step losses of an uninterrupted one (on
CPU, same thread count).
"""
from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from mamo.core.cli import StageExit
from mamo.run_dir import RunDir
from mamo.trainer import checkpoint as ckpt
from mamo.trainer.batching import Stream, to_device
from mamo.trainer.config import OptimConfig, TrainConfig
from mamo.trainer.distributed import DistInfo, all_gather_objects, all_reduce_mean, any_rank, barrier, no_grad_sync
from mamo.trainer.fsdp import average_replicated_grads, weights_to_save
from mamo.trainer.metrics import MetricsLogger, StepFlops, truncate_after
from mamo.trainer.optim import build_optimizer, build_scheduler
from mamo.trainer.parallelize import data_parallel, parallelize
from mamo.trainer.seeding import step_seed
from mamo.trainer.signals import StopRequest

log = logging.getLogger(__name__)

EXIT_NONFINITE = 3


class TrainingAborted(StageExit, RuntimeError):
    """Too many non-finite steps in a row; the last good checkpoint is kept."""

    exit_code = EXIT_NONFINITE


class TrainingStopped(StageExit):
    """Stopped by SIGTERM/Ctrl-C after checkpointing the step; run again to continue."""

    error = False

    def __init__(self, step: int, exit_code: int):
        super().__init__(f"stopped by signal at step {step}; checkpoint written, run again "
                         "(or --resume) to continue")
        self.step, self.exit_code = step, exit_code


@dataclass
class TrainingJob:
    """What one run trains: everything the loop itself does not decide."""

    model: nn.Module  # unwrapped, on its device; forward(batch, seed) -> {"loss", ...}
    stream: Stream  # already at the resume point
    run_dir: RunDir
    total_steps: int
    meta: dict[str, Any]  # every checkpoint's meta.json; a checkpoint resumed must fit it
    samples_per_step: int  # over all ranks and micro-batches (samples/s)
    resume_from: Path | None = None
    lr_by_prefix: dict[str, float] = field(default_factory=dict)  # e.g. {"head.": head_lr}
    # Pre-training checkpoints its last step (the run's resumable end); fine-tuning exports
    # its own files instead and checkpoints on train.ckpt_every and on a stop request only.
    checkpoint_at_end: bool = True
    # Called with (step, total_steps) before each optimizer step: schedules that live in the
    # model (MAMO's warm-ups of w_mmm and alpha) follow the step count, also on resume.
    before_step: Callable[[int, int], None] | None = None


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def scalar(v: Any) -> torch.Tensor | float | None:
    """A loggable scalar term, left on its device (read once per step by ``to_host``)."""
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return v.detach().float().reshape(())
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return None


def to_host(values: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """Every tensor of ``values`` to a float with one device-to-host copy (one sync per
    step instead of one per term)."""
    names = [k for k, v in values.items() if isinstance(v, torch.Tensor)]
    host = torch.stack([values[k].to(values[names[0]].device) for k in names]).tolist() if names else []
    return {**{k: float(v) for k, v in values.items() if not isinstance(v, torch.Tensor)},
            **dict(zip(names, host))}


def temperature_of(model: nn.Module) -> float | None:
    for name in ("temperature", "temp"):
        t = getattr(model, name, None)
        if callable(t) and not isinstance(t, torch.Tensor):
            t = t()
        if isinstance(t, torch.Tensor) and t.numel() == 1:
            return float(t.detach().float().item())
    return None


class Trainer:
    """One run's model, optimizer, schedule, data stream and step count, on ``self``."""

    def __init__(self, job: TrainingJob, tc: TrainConfig, optim: OptimConfig, info: DistInfo,
                 progress: bool = False):
        self.job, self.tc, self.info, self.progress = job, tc, info, progress
        self.model = job.model
        self.step = 0
        # Weights go in before parallelising (FSDP swaps parameters for sharded DTensors);
        # the optimizer is built after it and gets its state afterwards.
        loaded = ckpt.load_checkpoint(job.resume_from, self.model, job.meta) if job.resume_from else None
        self.replicated = parallelize(self.model, tc, info)
        self.optimizer = build_optimizer(self.model, optim, job.lr_by_prefix)
        self.scheduler = build_scheduler(self.optimizer, optim, job.total_steps)
        if loaded is not None:
            self.load_state(loaded.state)
        self.step_model = data_parallel(self.model, tc, info)
        self.amp_dtype = autocast_dtype(tc.precision, info.device)
        self.max_norm = optim.clip_grad_norm if optim.clip_grad_norm > 0 else float("inf")
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.bad_in_a_row = 0
        self.ema_sps: float | None = None
        self.stop = StopRequest()
        self.metrics: MetricsLogger | None = None
        gpu = torch.cuda.get_device_name(info.device) if info.device.type == "cuda" else None
        self.flops = StepFlops(info.world_size, gpu)  # counted on this process's first step

    # ------------------------------------------------------------------ the loop

    def train(self) -> None:
        """Optimizer steps from ``self.step`` to the last. Raises ``TrainingStopped`` on a
        stop request (after checkpointing), ``TrainingAborted`` after too many non-finite steps."""
        total = self.job.total_steps
        self.open_metrics()
        bar = tqdm(total=total, initial=self.step, disable=not (self.progress and self.info.is_main),
                   unit="step", dynamic_ncols=True, file=sys.stderr)
        redirect = logging_redirect_tqdm() if self.progress else contextlib.nullcontext()
        try:
            with self.stop, redirect:
                while self.step < total:
                    record = self.train_step()
                    self.log_step(record, bar)
                    if self.bad_in_a_row >= self.tc.max_nonfinite:
                        raise TrainingAborted(
                            f"{self.bad_in_a_row} non-finite steps in a row (train.max_nonfinite="
                            f"{self.tc.max_nonfinite}); stopped at step {self.step}, last good checkpoint: "
                            f"{ckpt.latest_checkpoint(self.job.run_dir.path) or 'none'}")
                    stopping = any_rank(self.stop.requested, self.info)
                    # No checkpoint during a non-finite streak: the last one stays the last good one.
                    if self.bad_in_a_row == 0 and (self.checkpoint_due() or stopping):
                        self.save_checkpoint()
                    if stopping and self.step < total:
                        raise TrainingStopped(self.step, self.stop.exit_code)
        finally:
            bar.close()
            if self.metrics is not None:
                self.metrics.close()

    def train_step(self) -> dict[str, Any]:
        """One optimizer step over ``train.grad_accum`` micro-batches; returns its metrics."""
        tc, info = self.tc, self.info
        t_start = time.perf_counter()
        data_wait = 0.0
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms: dict[str, torch.Tensor | float] = {}
        if self.job.before_step is not None:
            self.job.before_step(self.step, self.job.total_steps)
        with self.flops.counting():
            for micro in range(tc.grad_accum):
                t0 = time.perf_counter()
                batch = to_device(self.job.stream.next(), info.device)
                data_wait += time.perf_counter() - t0
                out = self.forward_backward(batch, micro)
                for k, v in out.items():
                    s = scalar(v)
                    if s is not None:
                        terms[k] = terms.get(k, 0.0) + s / tc.grad_accum
        average_replicated_grads(self.replicated, info)  # FSDP leaves 0-dim parameters to us
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        # The step's one host sync: the terms and the norm, read together (the skip below needs them)
        terms = to_host({**terms, "grad_norm": norm.full_tensor() if hasattr(norm, "full_tensor") else norm})
        grad_norm = terms.pop("grad_norm")
        lr = self.optimizer.param_groups[0]["lr"]
        nonfinite = any_rank(not (math.isfinite(terms.get("loss", float("nan"))) and math.isfinite(grad_norm)), info)
        if nonfinite:
            # Skip the update entirely; the schedule still advances with the step count.
            self.optimizer.zero_grad(set_to_none=True)
            self.bad_in_a_row += 1
            if info.is_main:
                log.warning("step %d: non-finite loss or gradient; update skipped (%d/%d in a row)",
                            self.step + 1, self.bad_in_a_row, tc.max_nonfinite)
        else:
            self.optimizer.step()
            momentum_update = getattr(self.model, "momentum_update", None)
            if momentum_update is not None:  # EMA teacher, on the unwrapped module
                momentum_update()
            self.bad_in_a_row = 0
        self.scheduler.step()
        self.step += 1

        step_time = time.perf_counter() - t_start
        terms = all_reduce_mean(terms, info)
        temp = terms.pop("temp", None)  # the model reports its ITC temperature as "temp"
        record = {
            **terms,
            "lr": lr,
            "temperature": temp if temp is not None else temperature_of(self.model),
            "grad_norm": grad_norm,
            "samples_per_s": self.job.samples_per_step / max(step_time, 1e-9),
            "data_wait_share": data_wait / max(step_time, 1e-9),
            "step_time_s": step_time,
            **self.flops.fields(step_time),
            "peak_mem_gib": torch.cuda.max_memory_allocated(info.device) / 2**30 if info.device.type == "cuda" else None,
            "epoch": self.job.stream.epoch,
            "skipped": nonfinite,
        }
        return {k: v for k, v in record.items() if v is not None}

    def forward_backward(self, batch: Any, micro: int) -> dict[str, Any]:
        """Forward (autocast) and backward of one micro-batch; gradients are reduced across
        ranks once per optimizer step, on the last micro-batch."""
        info, dtype = self.info, self.amp_dtype
        last = micro == self.tc.grad_accum - 1
        sync = contextlib.nullcontext() if (last or not info.distributed) else no_grad_sync(self.step_model)
        with sync:
            with torch.autocast(info.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                out = self.step_model(batch, step_seed(self.tc.seed, self.step, micro, info.rank))
            (out["loss"] / self.tc.grad_accum).backward()
        return out

    # ------------------------------------------------------------------ metrics

    def open_metrics(self) -> None:
        """Cut ``metrics.jsonl`` back to the resume step (rank 0), then append to it."""
        if self.info.is_main:
            self.job.run_dir.path.mkdir(parents=True, exist_ok=True)
            truncate_after(self.job.run_dir.metrics, self.step)
        barrier(self.info)
        self.metrics = MetricsLogger(self.job.run_dir.path, enabled=self.info.is_main,
                                     tensorboard=self.tc.tensorboard)

    def log_step(self, record: dict[str, Any], bar: tqdm) -> None:
        assert self.metrics is not None
        self.metrics.log(self.step, record)
        sps, loss, lr = record["samples_per_s"], record.get("loss", float("nan")), record["lr"]
        self.ema_sps = sps if self.ema_sps is None else 0.9 * self.ema_sps + 0.1 * sps
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", sps=f"{self.ema_sps:.1f}", lr=f"{lr:.2e}", refresh=False)
        last = self.step == self.job.total_steps
        if self.info.is_main and not self.progress and (self.step % self.tc.log_every == 0 or last):
            log.info("step %d/%d loss %.4f lr %.2e %.1f samples/s", self.step, self.job.total_steps, loss, lr, sps)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_due(self) -> bool:
        every = self.tc.ckpt_every
        return bool(every and self.step % every == 0) or (self.job.checkpoint_at_end
                                                          and self.step == self.job.total_steps)

    def save_checkpoint(self) -> None:
        """``checkpoints/step_<step>/``: weights, optimizer, schedule, and every rank's RNG and
        data position (they differ per rank). Collectives first (every rank), rank 0 writes."""
        weights = weights_to_save(self.model)  # sharded: gathered to rank 0
        optim_state = ckpt.optimizer_state(self.model, self.optimizer)
        rngs = all_gather_objects(ckpt.rng_state(), self.info)
        datas = all_gather_objects(self.job.stream.state_dict(), self.info)
        if self.info.is_main:
            state = {"step": self.step, "optimizer": optim_state, "scheduler": self.scheduler.state_dict(),
                     "rng_by_rank": rngs, "data_by_rank": datas}
            ckpt.save_checkpoint(self.job.run_dir.path, self.step, weights, state, self.job.meta, self.tc.keep_last)
        barrier(self.info)

    def load_state(self, state: dict[str, Any]) -> None:
        """Optimizer, schedule, this rank's RNG and the step of a checkpoint's ``state.pt``
        (weights and the data position are loaded before: see ``__init__``, ``TrainingJob``)."""
        ckpt.load_optimizer_state(self.model, self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rngs = state["rng_by_rank"]  # one per saved rank (fewer after an elastic resume)
        ckpt.set_rng_state(rngs[self.info.rank % len(rngs)])
        self.step = int(state["step"])
