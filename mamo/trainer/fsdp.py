"""Fully sharded data parallel (PyTorch FSDP2, ``fully_shard``) for ``train.parallel=fsdp``.

Each transformer block with trainable weights becomes one FSDP unit (its parameters, their
gradients and AdamW's two moments are split across ranks and gathered only while the block
runs), and the root unit holds the rest (patch/token embeddings, projections, heads). That is
torchtitan's layout; with N ranks the trainable state per GPU drops to about 1/N.

The momentum (EMA) teacher is sharded the same way: its tensors, buffers in the model (so no
optimizer or DDP ever sees them), become frozen parameters before ``fully_shard``, so each
teacher block is a unit gathered for its no-grad forward, and the EMA update runs on each
rank's own shards with no communication (teacher and online shards cover the same elements).

What stays replicated: the ITC queue (a buffer) and 0-dim parameters (the ITC temperature):
FSDP2 cannot shard scalars, so they are left out of FSDP (``ignored_params``) and their
gradients are averaged here, as DDP would.

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
    """The modules that become their own FSDP unit: every transformer block holding
    parameters (online blocks, and teacher blocks once :func:`teacher_to_frozen_params` ran)."""
    from mamo.model.transformer import transformer_blocks

    return [b for b in transformer_blocks(model) if any(True for _ in b.parameters())]


def teacher_to_frozen_params(model: nn.Module) -> int:
    """Turn the momentum teacher's tensors (buffers named like the online parameters) into
    parameters with ``requires_grad=False``, in place, so that FSDP shards them. State-dict
    names do not change. Returns how many tensors moved."""
    teacher, online = getattr(model, "momentum", None), getattr(model, "enc", None)
    if teacher is None or online is None:
        return 0
    names = {n for n, _ in online.named_parameters()}
    moved = 0
    for prefix, sub in teacher.named_modules():
        for name, buf in list(sub._buffers.items()):
            full = f"{prefix}.{name}" if prefix else name
            if buf is None or full not in names:
                continue
            del sub._buffers[name]
            sub.register_parameter(name, nn.Parameter(buf, requires_grad=False))
            moved += 1
    return moved


def shard_model(model: nn.Module, info: DistInfo) -> list[nn.Parameter]:
    """Apply ``fully_shard`` in place (blocks first, then the root).

    Returns the parameters left replicated (0-dim ones), whose gradients the caller averages
    with :func:`average_replicated_grads` before clipping. Build the optimizer afterwards:
    sharding replaces every managed parameter with a DTensor.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(info.device.type, (info.world_size,))
    teacher_to_frozen_params(model)
    # Scalars cannot be sharded: the trainable ones are averaged by hand, frozen ones (a
    # teacher copy of a scalar) stay as they are on every rank.
    scalars = [p for p in model.parameters() if p.ndim == 0]
    replicated = [p for p in scalars if p.requires_grad]
    for unit in shard_units(model):
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh, ignored_params=set(scalars))
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


def weights_to_save(model: nn.Module) -> nn.Module | dict[str, torch.Tensor]:
    """What checkpoint.save_checkpoint / export_final take: the module itself, or, when it is
    sharded, its full state dict (a collective: every rank must call it)."""
    return full_state_dict(model) if is_sharded(model) else model


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, full size, on the CPU of rank 0 (empty on other ranks).

    A collective: every rank must call it. Names are the unwrapped module's.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.contiguous() for k, v in sd.items()}


def training_state_bytes(model: nn.Module, world_size: int, sharded: bool) -> dict[str, int]:
    """Bytes per rank of the persistent training state, before anything runs (the model may
    live on the ``meta`` device): trainable weights, their gradients and AdamW's two moments
    (all fp32), the momentum teacher and the other buffers. With ``sharded`` (FSDP) everything
    but the 0-dim parameters and the non-teacher buffers is split ``world_size`` ways, as
    ``benchmarks/fsdp_memory.py`` measures."""
    def size(ts) -> int:
        return sum(t.numel() * t.element_size() for t in ts)

    n = world_size if sharded else 1
    trainable = [p for p in model.parameters() if p.requires_grad]
    scalars = size(p for p in trainable if p.ndim == 0)
    weights = size(trainable)
    teacher_mod = getattr(model, "momentum", None)
    teacher = size([*teacher_mod.parameters(), *teacher_mod.buffers()]) if teacher_mod is not None else 0
    other = size(b for name, b in model.named_buffers() if not name.startswith("momentum."))
    return {
        "weights": (weights - scalars) // n + scalars,
        "grads": (weights - scalars) // n + scalars,
        "optimizer": 2 * ((weights - scalars) // n + scalars),
        "teacher": teacher // n,
        "other buffers": other,
    }
