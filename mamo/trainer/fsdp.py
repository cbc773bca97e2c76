"""Fully sharded data parallel (PyTorch FSDP2, ``fully_shard``) for ``train.parallel=fsdp``.

Each transformer block with trainable weights becomes one FSDP unit (its parameters, their
gradients and AdamW's two moments are split across ranks and gathered only while the block
runs), and the root unit holds the rest (patch/token embeddings, projections, heads). That is
torchtitan's layout; with N ranks the trainable state per GPU drops to about 1/N.

What stays replicated on purpose:
- the momentum (EMA) teacher and the ITC queue: they are buffers, which FSDP never shards.
  The teacher runs its forward on every rank, so it needs its full weights there anyway; the
  EMA update reads the online weights through ``DTensor.full_tensor()`` (one all-gather per
  step, the same volume as one forward's).
- 0-dim parameters (the ITC temperature): FSDP2 cannot shard scalars. They are left out of
  FSDP (``ignored_params``) and their gradients are averaged here, as DDP would.

Checkpoints keep the single-process format (full weights in safetensors, optimizer state
keyed by parameter name), so a run can be resumed with DDP or FSDP and evaluated anywhere.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from mamo.trainer.distributed import DistInfo


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The modules that become their own FSDP unit: blocks holding trainable parameters
    (the momentum copy's blocks hold buffers only and stay out)."""
    return [m for m in model.modules()
            if type(m).__name__.endswith("Block") and any(p.requires_grad for p in m.parameters())]


def shard_model(model: nn.Module, info: DistInfo) -> list[nn.Parameter]:
    """Apply ``fully_shard`` in place (blocks first, then the root).

    Returns the parameters left replicated (0-dim ones), whose gradients the caller averages
    with :func:`average_replicated_grads` before clipping. Build the optimizer afterwards:
    sharding replaces every managed parameter with a DTensor.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(info.device.type, (info.world_size,))
    replicated = [p for p in model.parameters() if p.requires_grad and p.ndim == 0]
    for unit in shard_units(model):
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh, ignored_params=set(replicated))
    return replicated


def average_replicated_grads(params: Iterable[nn.Parameter], info: DistInfo) -> None:
    """Mean of the gradients of parameters FSDP does not manage (one all-reduce)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or not info.distributed:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= info.world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, full size, on the CPU of rank 0 (empty on other ranks).

    A collective: every rank must call it. Names are the unwrapped module's.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.contiguous() for k, v in sd.items()}
