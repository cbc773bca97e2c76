"""Activation checkpointing per transformer block (``train.activation_checkpointing``).

A checkpointed block keeps only its input for the backward pass and recomputes its
activations (attention, MLP) there: activation memory drops to about one tensor per block at
the cost of a second forward of the blocks (~1/3 more compute per step). That buys a larger
batch per GPU, which matters for MAMO's in-batch hard negatives and contrastive loss.

The block's ``forward`` is wrapped in place (PyTorch's non-reentrant ``checkpoint``), so
parameter names, state dicts and checkpoints do not change, and ``torch.compile`` and FSDP
apply on top as usual (torchtitan's order: checkpointing, then compile, then sharding). Only
blocks with trainable weights are wrapped; the momentum teacher runs without gradients and
keeps nothing anyway. Dropout draws the same masks in the recomputation (the RNG state is
saved with each block's input).
"""
from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def checkpointed_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks :func:`checkpoint_blocks` wraps: transformer blocks with trainable weights."""
    from mamo.model.transformer import transformer_blocks

    return [b for b in transformer_blocks(model) if any(p.requires_grad for p in b.parameters())]


def checkpoint_blocks(model: nn.Module) -> int:
    """Wrap every trainable block's forward in ``torch.utils.checkpoint``; returns how many."""
    blocks = checkpointed_blocks(model)
    for block in blocks:
        if getattr(block.forward, "_mamo_checkpointed", False):
            continue
        block.forward = _checkpointed(block.forward)
    return len(blocks)


def _checkpointed(forward):
    @functools.wraps(forward)
    def run(*args, **kwargs):
        if not torch.is_grad_enabled():  # evaluation / teacher-style calls: nothing to save
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    run._mamo_checkpointed = True
    return run


def saved_activation_bytes(fn, model: nn.Module | None = None) -> tuple[object, int]:
    """Run ``fn()`` and count the memory autograd keeps for the backward while it runs (what
    activation checkpointing reduces); returns ``(fn's result, bytes)``.

    Each storage is counted once. With ``model``, its parameters and buffers are left out
    (they exist anyway) and the inputs that checkpointed blocks keep for their recomputation
    are counted (they are held outside autograd's saved tensors)."""
    total = 0
    seen: set[int] = set()
    if model is not None:
        seen |= {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}

    def count(t: torch.Tensor) -> None:
        nonlocal total
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()

    def pack(t: torch.Tensor):
        count(t)
        return t

    def block_inputs(module, args, kwargs):
        if torch.is_grad_enabled():
            for a in (*args, *kwargs.values()):
                if isinstance(a, torch.Tensor):
                    count(a)

    hooks = [] if model is None else [
        b.register_forward_pre_hook(block_inputs, with_kwargs=True)
        for b in model.modules() if getattr(b.forward, "_mamo_checkpointed", False)]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = fn()
    finally:
        for h in hooks:
            h.remove()
    return out, total
