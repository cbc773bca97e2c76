"""How the model runs: activation checkpointing, ``torch.compile`` per block, FSDP sharding,
in torchtitan's order (checkpointing, then compile, then sharding), and the DDP wrapper."""
from __future__ import annotations

from torch import nn

from mamo.trainer.activation_checkpointing import checkpoint_blocks
from mamo.trainer.config import TrainConfig
from mamo.trainer.distributed import DistInfo, wrap_ddp
from mamo.trainer.fsdp import shard_model


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


def is_sharded_run(tc: TrainConfig, info: DistInfo) -> bool:
    return info.distributed and tc.parallel == "fsdp"


def parallelize(model: nn.Module, tc: TrainConfig, info: DistInfo) -> list[nn.Parameter]:
    """Apply ``tc``'s settings to ``model`` in place; returns the parameters FSDP leaves
    replicated (their gradients are averaged by hand), empty without FSDP. Build the optimizer
    afterwards: sharding replaces every managed parameter with a DTensor."""
    if tc.activation_checkpointing:
        checkpoint_blocks(model)
    if tc.compile:
        compile_blocks(model, tc.compile_mode)
    return shard_model(model, info) if is_sharded_run(tc, info) else []


def data_parallel(model: nn.Module, tc: TrainConfig, info: DistInfo) -> nn.Module:
    """What the step calls: the sharded module itself under FSDP, else DDP (single process:
    the module)."""
    return model if is_sharded_run(tc, info) else wrap_ddp(model, info, bool(tc.ddp_find_unused))
