"""How the model runs: activation checkpointing, ``torch.compile`` (per block or the whole
step, ``train.compile_scope``), FSDP sharding, in torchtitan's order (checkpointing, then
compile, then sharding), and the DDP wrapper."""
from __future__ import annotations

import torch
from torch import nn

from mamo.core.config import check
from mamo.trainer.activation_checkpointing import checkpoint_blocks
from mamo.trainer.config import TrainConfig
from mamo.trainer.distributed import DistInfo, wrap_ddp
from mamo.trainer.fsdp import shard_model


def compile_blocks(model: nn.Module, mode: str = "default") -> int:
    """``torch.compile`` every transformer block in place (torchtitan-style, per block).

    The blocks hold nearly all the FLOPs and are identical in shape, so one compiled graph
    serves them all, online and momentum copies alike; the code between them stays eager.
    Returns the number of blocks compiled.
    """
    from mamo.model.transformer import transformer_blocks

    blocks = transformer_blocks(model)
    for block in blocks:
        block.compile(mode=mode)
    return len(blocks)


def has_static_step(model: nn.Module) -> bool:
    """Whether ``model`` splits its forward into eager draws and a capturable step (MAMO:
    ``forward(batch, seed) = step(batch, draw(batch, seed))``)."""
    return callable(getattr(model, "draw", None)) and callable(getattr(model, "step", None))


def compile_step(model: nn.Module, mode: str = "default") -> None:
    """``torch.compile`` the model's training step (``MAMO.step``: everything after the random
    draws, which stay eager) in place.

    The compiled function is set as the instance's ``step``, which ``forward`` calls: the
    module itself is not wrapped, so its parameter and state-dict names (and checkpoints) stay
    those of the eager model, without ``_orig_mod.`` prefixes. What changes from step to step
    (the draws, the warm-up weights) reaches the step as tensors, so the graph is compiled once.
    """
    model.step = torch.compile(model.step, mode=mode)


def check_compile_scope(tc: TrainConfig, world_size: int, model: nn.Module | None = None) -> None:
    """Refuse (``ConfigError`` naming ``train.compile_scope``, exit 2) what the whole-step
    compile cannot run: several processes, whose step all-gathers features across ranks inside
    the graph (DDP and FSDP keep ``blocks``), or a model without a separate step."""
    if not (tc.compile and tc.compile_scope == "step"):
        return
    check(world_size == 1, "train.compile_scope",
          f"'step' runs in a single process only (this run has {world_size}: the step gathers "
          "features across ranks, which is not compiled); use train.compile_scope=blocks")
    if model is not None:
        check(has_static_step(model), "train.compile_scope",
              f"'step' needs a model with draw() and step() (MAMO pre-training), not "
              f"{type(model).__name__}; use train.compile_scope=blocks")


def is_sharded_run(tc: TrainConfig, info: DistInfo) -> bool:
    return info.distributed and tc.parallel == "fsdp"


def parallelize(model: nn.Module, tc: TrainConfig, info: DistInfo) -> list[nn.Parameter]:
    """Apply ``tc``'s settings to ``model`` in place; returns the parameters FSDP leaves
    replicated (their gradients are averaged by hand), empty without FSDP. Build the optimizer
    afterwards: sharding replaces every managed parameter with a DTensor."""
    check_compile_scope(tc, info.world_size, model)
    if tc.activation_checkpointing:
        checkpoint_blocks(model)
    if tc.compile and tc.compile_scope == "step":
        compile_step(model, tc.compile_mode)
    elif tc.compile:
        compile_blocks(model, tc.compile_mode)
    return shard_model(model, info) if is_sharded_run(tc, info) else []


def data_parallel(model: nn.Module, tc: TrainConfig, info: DistInfo) -> nn.Module:
    """What the step calls: the sharded module itself under FSDP, else DDP (single process:
    the module)."""
    return model if is_sharded_run(tc, info) else wrap_ddp(model, info, bool(tc.ddp_find_unused))
