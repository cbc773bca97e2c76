"""The momentum (EMA teacher) copy: same modules, but its tensors are buffers.

Turning the copy's parameters into persistent buffers keeps them out of
``model.parameters()`` / ``named_parameters()`` (so no optimizer ever sees them and autograd
never tracks them) while ``state_dict()``, ``.to()`` and DDP buffer broadcast still carry
them, so checkpoints resume exactly.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """Deep copy of ``module`` whose parameters are re-registered as buffers."""
    twin = copy.deepcopy(module)
    for sub in twin.modules():
        for name, param in list(sub._parameters.items()):
            if param is None:
                continue
            del sub._parameters[name]
            sub.register_buffer(name, param.detach().clone(), persistent=True)
    twin.requires_grad_(False)
    return twin


def paired_tensors(online: nn.Module, teacher: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(teacher tensors, online params) in matching order, checking names and shapes."""
    params = dict(online.named_parameters())
    # The teacher's tensors are buffers; under FSDP (mamo.trainer.fsdp) they become frozen,
    # sharded parameters. Either way they are found by name.
    buffers = {**dict(teacher.named_buffers()), **dict(teacher.named_parameters())}
    t_list, o_list = [], []
    for name, p in params.items():
        if name not in buffers:
            raise KeyError(f"momentum copy has no tensor for {name!r}")
        if buffers[name].shape != p.shape:
            raise ValueError(f"momentum tensor {name!r} has shape {tuple(buffers[name].shape)}, "
                             f"online has {tuple(p.shape)}")
        t_list.append(buffers[name])
        o_list.append(p)
    return t_list, o_list


@torch.no_grad()
def ema_update(online: nn.Module, teacher: nn.Module, m: float) -> None:
    """``teacher <- m * teacher + (1 - m) * online`` for every online parameter."""
    t_list, o_list = paired_tensors(online, teacher)
    if not t_list:
        return
    teacher_t, online_t = [], []
    for t, o in zip(t_list, o_list):
        t, o = _aligned(t, o.detach())
        teacher_t.append(t)
        online_t.append(o)
    torch._foreach_mul_(teacher_t, m)
    torch._foreach_add_(teacher_t, online_t, alpha=1.0 - m)


def _aligned(t: torch.Tensor, o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain tensors covering the same elements. Under FSDP both sides are sharded alike
    (same shape, same mesh, dim-0 shards), so each rank updates its own shard, no
    communication; a replicated teacher reads the whole online tensor."""
    t_sharded, o_sharded = hasattr(t, "to_local"), hasattr(o, "to_local")
    if t_sharded and o_sharded:
        if t.placements != o.placements:
            raise ValueError(f"teacher and online shards differ: {t.placements} vs {o.placements}")
        return t.to_local(), o.to_local()
    if o_sharded:
        return t, o.full_tensor()
    if t_sharded:
        raise ValueError("a sharded teacher needs a sharded online model")
    return t, o


@torch.no_grad()
def copy_into(online: nn.Module, teacher: nn.Module) -> None:
    """Make the teacher equal to the online model (after initialisation or weight loading)."""
    t_list, o_list = paired_tensors(online, teacher)
    for t, o in zip(t_list, o_list):
        t.copy_(o)
