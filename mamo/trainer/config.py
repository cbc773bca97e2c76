"""The top-level training configuration: model + loss + data (owned by their stages) plus the
optimizer, the training loop and the run's identity.

Defaults here are the single source of truth; ``configs/*.yaml`` only override them. Loaded
with ``mamo.core.config.load_config(RunConfig, path, overrides)``; every impossible value raises a
``ConfigError`` naming its dotted key.
"""
from __future__ import annotations

from dataclasses import field
from typing import Annotated, Literal

from pydantic import Field

from mamo.core.config import ConfigError, check, load_config, section
from mamo.data.config import DataConfig
from mamo.model.config import LossConfig, ModelConfig

AtLeast0 = Annotated[int, Field(ge=0)]
AtLeast1 = Annotated[int, Field(ge=1)]
Beta = Annotated[float, Field(ge=0, lt=1)]


@section
class OptimConfig:
    """AdamW + linear warm-up + cosine decay (ALBEF-like)."""

    lr: Annotated[float, Field(gt=0)] = 1e-4  # peak learning rate, reached at the end of warm-up
    # not applied to norms, biases, embeddings, temperature
    weight_decay: Annotated[float, Field(ge=0)] = 0.02
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    eps: Annotated[float, Field(gt=0)] = 1e-8
    warmup_steps: AtLeast0 = 100
    schedule: Literal["cosine", "constant"] = "cosine"
    # cosine ends at lr * min_lr_ratio
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1
    # 0 disables clipping (the norm is still logged)
    clip_grad_norm: Annotated[float, Field(ge=0)] = 1.0


@section
class TrainConfig:
    """The loop: how long, how often to log and checkpoint, numerics."""

    steps: AtLeast0 = 0  # optimizer steps; 0 = derive from `epochs`
    epochs: int = 1  # used only when steps == 0
    grad_accum: AtLeast1 = 1  # micro-batches per optimizer step
    log_every: AtLeast1 = 10  # console summary interval (metrics.jsonl gets every step)
    ckpt_every: AtLeast0 = 500  # optimizer steps between checkpoints; 0 = only the final export
    keep_last: AtLeast1 = 3  # checkpoints kept on disk (older ones are deleted)
    seed: AtLeast0 = 0  # model init, and (with the step) every per-step masking seed
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False  # torch.compile (what: compile_scope)
    # What train.compile compiles. "blocks": each transformer block on its own (one small graph
    # that serves every block of every encoder; the code between the blocks stays eager; works
    # under DDP and FSDP). "step": the whole training step after the random draws (MAMO.step:
    # every encoder pass, the losses and their backward as one graph, so Inductor also fuses
    # what lies between the blocks: embeddings, projections, masking, the loss heads; a longer
    # first compile; single process only: a DDP/FSDP run refuses it at the start).
    compile_scope: Literal["blocks", "step"] = "blocks"
    # torch.compile mode: "reduce-overhead" adds CUDA graphs (removes the
    # per-kernel host launch cost that dominates small shapes; static shapes, more memory)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune",
                          "max-autotune-no-cudagraphs"] = "default"
    # Recompute each trainable block's activations in the backward instead of keeping them:
    # much less activation memory (a larger batch per GPU) for ~1/3 more compute per step.
    activation_checkpointing: bool = False
    max_nonfinite: AtLeast1 = 5  # abort after this many non-finite steps in a row
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch intra-op CPU threads; 0 = torch's default. On a shared CPU box 1 is often much
    # faster (OpenMP threads spin when cores are oversubscribed).
    num_threads: AtLeast0 = 0
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

    def __post_init__(self) -> None:
        check(self.epochs >= 1 or self.steps > 0, "epochs",
              f"must be >= 1 when steps is 0, got {self.epochs}")


@section
class RunSection:
    """Where the run lives: ``<dir>/<name>/`` unless ``--run-dir`` is given."""

    name: str = "tiny"
    dir: str = "runs"

    def __post_init__(self) -> None:
        ok = bool(self.name) and "/" not in self.name and self.name not in (".", "..")
        check(ok, "name", f"must be a plain directory name, got {self.name!r}")


@section
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunSection = field(default_factory=RunSection)

    def __post_init__(self) -> None:
        # Sections check themselves as they are built; here only what crosses sections.
        m, d = self.model, self.data
        check(d.max_text_len <= m.text.max_positions, "data.max_text_len",
              f"must be <= model.text.max_positions={m.text.max_positions}, got {d.max_text_len}")
        check(d.image_size % m.vision.patch_size == 0, "data.image_size",
              f"must be a multiple of model.vision.patch_size={m.vision.patch_size}, "
              f"got {d.image_size}")
        if self.loss.text_target in ("concept", "concept_mlm") and self.loss.lambda_t > 0:
            check(d.vocab_id != "none", "data.vocab_id",
                  f"is 'none' but loss.text_target={self.loss.text_target} needs concept labels")


def load_run_config(path: str | None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """``RunConfig`` defaults <- YAML ``path`` <- ``a.b=c`` overrides (raises ConfigError)."""
    cfg = load_config(RunConfig, path, list(overrides))
    if not isinstance(cfg, RunConfig):  # pragma: no cover - load_config contract
        raise ConfigError("", "config did not build a RunConfig")
    return cfg
