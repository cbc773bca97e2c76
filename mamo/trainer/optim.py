"""AdamW with decay/no-decay parameter groups, and the warm-up + cosine learning-rate schedule,
for pre-training and fine-tuning alike.

The schedule is a pure function of the optimizer step, so a resumed run gets the same learning
rate at the same step without replaying anything.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from mamo.trainer.config import OptimConfig

# The one weight-decay rule (ALBEF/timm practice), decided by the module that owns a parameter:
# no decay on norms, embeddings, biases and other vectors/scalars (gains, the ITC temperature).
NO_DECAY_MODULES = (nn.Embedding, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.modules.batchnorm._BatchNorm)
# Learned tokens and tables held as bare parameters are embeddings in spirit: no decay either.
NO_DECAY_NAME_PARTS = ("temp", "logit_scale", "pos_embed", "position_embedding", "modality_embed",
                       "cls_token", "mask_token")


def is_no_decay(name: str, param: torch.Tensor, owner: nn.Module | None = None) -> bool:
    """True when decaying ``param`` (named ``name``, owned by module ``owner``) would only hurt."""
    if owner is not None and isinstance(owner, NO_DECAY_MODULES):
        return True
    if name.rsplit(".", 1)[-1] == "bias" or param.ndim <= 1:  # biases, gains, scalars
        return True
    return any(part in name.lower() for part in NO_DECAY_NAME_PARTS)


def owners(model: nn.Module) -> dict[str, nn.Module]:
    """Parameter name -> the module that holds it directly."""
    out = {}
    for mname, module in model.named_modules():
        for pname, _ in module.named_parameters(recurse=False):
            out[f"{mname}.{pname}" if mname else pname] = module
    return out


def param_groups(model: nn.Module, weight_decay: float, lr: float | None = None,
                 lr_by_prefix: Mapping[str, float] | None = None) -> list[dict]:
    """The trainable parameters in decayed / non-decayed groups (with names), by
    :func:`is_no_decay`. ``lr_by_prefix`` gives parameters under a submodule their own
    learning rate (fine-tuning: ``{"head.": head_lr}``); each such part gets its two groups."""
    parts: dict[float | None, tuple[list, list, list, list]] = {}
    by_owner = owners(model)
    prefixes = dict(lr_by_prefix or {})
    for name, p in model.named_parameters():
        if not p.requires_grad:  # e.g. the momentum (EMA) copy
            continue
        part_lr = next((v for k, v in prefixes.items() if name.startswith(k)), lr)
        decay, no_decay, decay_names, no_decay_names = parts.setdefault(part_lr, ([], [], [], []))
        if is_no_decay(name, p, by_owner.get(name)):
            no_decay.append(p)
            no_decay_names.append(name)
        else:
            decay.append(p)
            decay_names.append(name)
    groups = []
    for part_lr, (decay, no_decay, decay_names, no_decay_names) in parts.items():
        extra = {} if part_lr is None else {"lr": part_lr}
        groups += [{"params": decay, "weight_decay": weight_decay, "names": decay_names, **extra},
                   {"params": no_decay, "weight_decay": 0.0, "names": no_decay_names, **extra}]
    return groups


def build_optimizer(model: nn.Module, cfg: "OptimConfig",
                    lr_by_prefix: Mapping[str, float] | None = None) -> torch.optim.AdamW:
    groups = param_groups(model, cfg.weight_decay, lr_by_prefix=lr_by_prefix)
    # "names" is informative only; AdamW keeps extra group keys in its state_dict, which
    # would make state.pt depend on names. Drop them before construction.
    groups = [{k: v for k, v in g.items() if k != "names"} for g in groups]
    # fused=True on CUDA: one kernel for every parameter's update instead of a dozen foreach
    # launches per group (the step's host time matters at MAMO's sizes). The CPU keeps the
    # default implementation, so CPU runs and their tests are unchanged.
    on_cuda = all(p.is_cuda for g in groups for p in g["params"]) and any(g["params"] for g in groups)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                             **({"fused": True} if on_cuda else {}))


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    Linear warm-up from 1/warmup to 1 over ``warmup_steps``, then cosine (or constant) decay
    down to ``min_lr_ratio`` at ``total_steps``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_lr_ratio + (1.0 - min_lr_ratio) * cosine


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: "OptimConfig", total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    # functools.partial (not a lambda) so that LambdaLR.state_dict holds plain data only.
    fn = functools.partial(
        lr_factor,
        warmup_steps=cfg.warmup_steps,
        total_steps=total_steps,
        min_lr_ratio=cfg.min_lr_ratio,
        schedule=cfg.schedule,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
