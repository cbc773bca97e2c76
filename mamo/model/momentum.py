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
    buffers = dict(teacher.named_buffers())
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
    torch._foreach_mul_(t_list, m)
    torch._foreach_add_(t_list, [_full(o.detach()) for o in o_list], alpha=1.0 - m)


def _full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of an FSDP-sharded parameter (the teacher is replicated, see
    mamo.trainer.fsdp); a plain tensor as it is."""
    full_tensor = getattr(t, "full_tensor", None)
    return full_tensor() if callable(full_tensor) else t


@torch.no_grad()
def copy_into(online: nn.Module, teacher: nn.Module) -> None:
    """Make the teacher equal to the online model (after initialisation or weight loading)."""
    t_list, o_list = paired_tensors(online, teacher)
    for t, o in zip(t_list, o_list):
        t.copy_(o)
