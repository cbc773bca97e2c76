"""The top-level training configuration: model + loss + data (owned by their stages) plus the
optimizer, the training loop and the run's identity.

Defaults here are the single source of truth; ``configs/*.yaml`` only override them. Loaded
with ``mamo.core.config.load_config(RunConfig, path, overrides)``; every impossible value raises a
``ConfigError`` naming its dotted key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mamo.core.config import ConfigError, check, load_config
from mamo.data.config import DataConfig
from mamo.model.config import LossConfig, ModelConfig


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


@dataclass
class OptimConfig:
    """AdamW + linear warm-up + cosine decay (ALBEF-like)."""

    lr: float = 1e-4  # peak learning rate, reached at the end of warm-up
    weight_decay: float = 0.02  # not applied to norms, biases, embeddings, temperature
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 100
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = 0.1  # cosine ends at lr * min_lr_ratio
    clip_grad_norm: float = 1.0  # 0 disables clipping (the norm is still logged)

    def validate(self, prefix: str = "") -> None:
        check(self.lr > 0, _join(prefix, "lr"), f"must be > 0, got {self.lr}")
        check(self.weight_decay >= 0, _join(prefix, "weight_decay"), f"must be >= 0, got {self.weight_decay}")
        for i, b in enumerate(self.betas):
            check(0 <= b < 1, _join(prefix, f"betas[{i}]"), f"must be in [0, 1), got {b}")
        check(self.eps > 0, _join(prefix, "eps"), f"must be > 0, got {self.eps}")
        check(self.warmup_steps >= 0, _join(prefix, "warmup_steps"), f"must be >= 0, got {self.warmup_steps}")
        check(0 <= self.min_lr_ratio <= 1, _join(prefix, "min_lr_ratio"), f"must be in [0, 1], got {self.min_lr_ratio}")
        check(self.clip_grad_norm >= 0, _join(prefix, "clip_grad_norm"), f"must be >= 0, got {self.clip_grad_norm}")


@dataclass
class TrainConfig:
    """The loop: how long, how often to log and checkpoint, numerics."""

    steps: int = 0  # optimizer steps; 0 = derive from `epochs`
    epochs: int = 1  # used only when steps == 0
    grad_accum: int = 1  # micro-batches per optimizer step
    log_every: int = 10  # console summary interval (metrics.jsonl gets every step)
    ckpt_every: int = 500  # optimizer steps between checkpoints; 0 = only the final export
    keep_last: int = 3  # checkpoints kept on disk (older ones are deleted)
    seed: int = 0  # model init, and (with the step) every per-step masking seed
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False  # torch.compile each transformer block
    # torch.compile mode for the blocks: "reduce-overhead" adds CUDA graphs (removes the
    # per-kernel host launch cost that dominates small shapes; static shapes, more memory)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune",
                          "max-autotune-no-cudagraphs"] = "default"
    # Recompute each trainable block's activations in the backward instead of keeping them:
    # much less activation memory (a larger batch per GPU) for ~1/3 more compute per step.
    activation_checkpointing: bool = False
    max_nonfinite: int = 5  # abort after this many non-finite steps in a row
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch intra-op CPU threads; 0 = torch's default. On a shared CPU box 1 is often much
    # faster (OpenMP threads spin when cores are oversubscribed).
    num_threads: int = 0
    # With several processes (torchrun): "ddp" replicates the model on every rank; "fsdp"
    # shards weights, gradients and optimizer state per transformer block (FSDP2), for models
    # that do not fit one GPU replicated. Checkpoints are the same either way.
    parallel: Literal["ddp", "fsdp"] = "ddp"
    # --resume with another number of processes than the checkpoint's: weights, optimizer,
    # schedule and step continue exactly; the data order (split per rank) cannot, so it
    # restarts at the next epoch boundary (the rest of the interrupted epoch is skipped).
    elastic_resume: bool = False
    ddp_find_unused: bool | None = None  # None: on when some loss weight is 0 (unused heads)
    tensorboard: bool = False  # also write TensorBoard events (needs `tensorboard` installed)
    init_from: str | None = None  # a checkpoint dir to start the weights from (same model + vocab)

    def validate(self, prefix: str = "") -> None:
        check(self.steps >= 0, _join(prefix, "steps"), f"must be >= 0, got {self.steps}")
        check(self.epochs >= 1 or self.steps > 0, _join(prefix, "epochs"), f"must be >= 1 when steps is 0, got {self.epochs}")
        check(self.grad_accum >= 1, _join(prefix, "grad_accum"), f"must be >= 1, got {self.grad_accum}")
        check(self.log_every >= 1, _join(prefix, "log_every"), f"must be >= 1, got {self.log_every}")
        check(self.ckpt_every >= 0, _join(prefix, "ckpt_every"), f"must be >= 0, got {self.ckpt_every}")
        check(self.keep_last >= 1, _join(prefix, "keep_last"), f"must be >= 1, got {self.keep_last}")
        check(self.seed >= 0, _join(prefix, "seed"), f"must be >= 0, got {self.seed}")
        check(self.num_threads >= 0, _join(prefix, "num_threads"), f"must be >= 0, got {self.num_threads}")
        check(self.max_nonfinite >= 1, _join(prefix, "max_nonfinite"), f"must be >= 1, got {self.max_nonfinite}")


@dataclass
class RunSection:
    """Where the run lives: ``<dir>/<name>/`` unless ``--run-dir`` is given."""

    name: str = "tiny"
    dir: str = "runs"

    def validate(self, prefix: str = "") -> None:
        ok = bool(self.name) and "/" not in self.name and self.name not in (".", "..")
        check(ok, _join(prefix, "name"), f"must be a plain directory name, got {self.name!r}")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunSection = field(default_factory=RunSection)

    def validate(self, prefix: str = "") -> None:
        # Sections validate themselves as they are built; here only what crosses sections.
        p = f"{prefix}." if prefix else ""
        m, d = self.model, self.data
        if m.text.max_positions is not None:
            check(d.max_text_len <= m.text.max_positions, f"{p}data.max_text_len",
                  f"must be <= model.text.max_positions={m.text.max_positions}, got {d.max_text_len}")
        if m.vision.patch_size is not None:
            check(d.image_size % m.vision.patch_size == 0, f"{p}data.image_size",
                  f"must be a multiple of model.vision.patch_size={m.vision.patch_size}, got {d.image_size}")
        if self.loss.text_target == "concept" and self.loss.lambda_t > 0:
            check(d.vocab_id != "none", f"{p}data.vocab_id",
                  "is 'none' but loss.text_target=concept needs concept labels")


def load_run_config(path: str | None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """``RunConfig`` defaults <- YAML ``path`` <- ``a.b=c`` overrides (raises ConfigError)."""
    cfg = load_config(RunConfig, path, list(overrides))
    if not isinstance(cfg, RunConfig):  # pragma: no cover - load_config contract
        raise ConfigError("", "config did not build a RunConfig")
    return cfg
