"""AdamW with decay/no-decay parameter groups, and the warm-up + cosine learning-rate schedule.

The schedule is a pure function of the optimizer step, so a resumed run gets the same learning
rate at the same step without replaying anything.
"""
from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from mamo.trainer.config import OptimConfig

# Learned tokens, position tables and scalars are embeddings in spirit: no decay either.
NO_DECAY_NAME_PARTS = ("temp", "logit_scale", "pos_embed", "position_embedding", "cls_token", "mask_token")
NO_DECAY_MODULES = (nn.Embedding, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.modules.batchnorm._BatchNorm)


def is_no_decay(name: str, param: torch.Tensor, owner: nn.Module | None = None) -> bool:
    """ALBEF/BERT practice: decaying a norm gain, a bias, an embedding or a temperature only hurts."""
    leaf = name.rsplit(".", 1)[-1]
    if owner is not None and isinstance(owner, NO_DECAY_MODULES):
        return True
    if leaf == "bias" or param.ndim <= 1:  # biases, gains, scalars (temperature)
        return True
    return any(part in name.lower() for part in NO_DECAY_NAME_PARTS)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split the trainable parameters into a decayed and a non-decayed group (with names).

    A model that defines ``no_weight_decay(name, param)`` decides for itself (MAMO does);
    otherwise ``is_no_decay`` applies.
    """
    rule = getattr(model, "no_weight_decay", None)
    owners = {}
    for mname, module in model.named_modules():
        for pname, _ in module.named_parameters(recurse=False):
            owners[f"{mname}.{pname}" if mname else pname] = module
    decay, no_decay, decay_names, no_decay_names = [], [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:  # e.g. the momentum (EMA) copy
            continue
        skip = rule(name, p) if callable(rule) else is_no_decay(name, p, owners.get(name))
        if skip:
            no_decay.append(p)
            no_decay_names.append(name)
        else:
            decay.append(p)
            decay_names.append(name)
    return [
        {"params": decay, "weight_decay": weight_decay, "names": decay_names},
        {"params": no_decay, "weight_decay": 0.0, "names": no_decay_names},
    ]


def build_optimizer(model: nn.Module, cfg: "OptimConfig") -> torch.optim.AdamW:
    groups = param_groups(model, cfg.weight_decay)
    # "names" is informative only; AdamW keeps extra group keys in its state_dict, which
    # would make state.pt depend on names. Drop them before construction.
    groups = [{k: v for k, v in g.items() if k != "names"} for g in groups]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


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
