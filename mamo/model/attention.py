"""Multi-head attention through one function with interchangeable implementations.

``attention(q, k, v, key_padding_mask, impl)`` is the only place scores are computed, so the
fused Triton kernel (``kernels.attention.fused_attention``) plugs in without touching the
encoders. All implementations agree on the contract of that kernel: ``key_padding_mask`` is
bool ``[B, Sk]`` with True = padding, and a query row whose keys are all padding returns
zeros (never NaN), in the forward and in the backward pass.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

IMPLS = ("eager", "sdpa", "triton", "auto")


def _all_padded(key_padding_mask: torch.Tensor | None) -> torch.Tensor | None:
    if key_padding_mask is None:
        return None
    return key_padding_mask.all(dim=-1)  # [B]


def attention_probs(q: torch.Tensor, k: torch.Tensor, key_padding_mask: torch.Tensor | None,
                    sm_scale: float | None = None) -> torch.Tensor:
    """Softmax attention weights ``[B, H, Sq, Sk]`` (rows of fully padded samples are 0)."""
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if key_padding_mask is None:
        return scores.softmax(dim=-1)
    dead = _all_padded(key_padding_mask)
    # A fully padded row attends to everything (finite softmax), then is zeroed: no NaN.
    pad = key_padding_mask & ~dead[:, None]
    scores = scores.masked_fill(pad[:, None, None, :], torch.finfo(scores.dtype).min)
    probs = scores.softmax(dim=-1)
    return probs.masked_fill(dead[:, None, None, None], 0.0)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              key_padding_mask: torch.Tensor | None = None, impl: str = "sdpa",
              sm_scale: float | None = None) -> torch.Tensor:
    """Scaled dot-product attention. ``q [B,H,Sq,D]``, ``k, v [B,H,Sk,D]`` -> ``[B,H,Sq,D]``."""
    if key_padding_mask is not None and key_padding_mask.dtype != torch.bool:
        raise TypeError(f"key_padding_mask must be bool (True = padding), got {key_padding_mask.dtype}")
    if impl == "auto":
        impl = auto_attention_impl(q, k, v, key_padding_mask, sm_scale) if q.is_cuda else "sdpa"
    if impl == "eager":
        return torch.matmul(attention_probs(q, k, key_padding_mask, sm_scale), v)
    if impl == "sdpa":
        if key_padding_mask is None:
            return F.scaled_dot_product_attention(q, k, v, scale=sm_scale)
        dead = _all_padded(key_padding_mask)
        keep = ~(key_padding_mask & ~dead[:, None])  # True = attend; dead rows attend all
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :],
                                             scale=sm_scale)
        return out.masked_fill(dead[:, None, None, None], 0.0)
    if impl == "triton":
        # Lazy: kernels/ is optional at import time and needs triton.
        from kernels.attention import fused_attention

        return fused_attention(q, k, v, key_padding_mask=key_padding_mask, sm_scale=sm_scale,
                               impl="triton")
    raise ValueError(f"unknown attention impl {impl!r}; expected one of {IMPLS}")


def auto_attention_impl(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        key_padding_mask: torch.Tensor | None = None, sm_scale: float | None = None,
                        bench: Callable[[Callable[[], Any]], float] | None = None) -> str:
    """``"triton"`` where the fused kernel's forward (+ backward when grads are needed)
    measured faster than SDPA at these shapes, else ``"sdpa"``: timed once per shape on
    first use and cached on disk with the kernels' launch configs (kernels/tuning.py). On
    the H200 Triton won at B128 S297 and lost at B64 S237 and S40 (docs/kernels.md)."""
    from kernels.dispatch import auto_impl

    def run(name: str) -> Callable[..., torch.Tensor]:
        return lambda q, k, v, m: attention(q, k, v, m, impl=name, sm_scale=sm_scale)

    return auto_impl(f"attention:{sm_scale}", run, (q, k, v, key_padding_mask), impls=("sdpa", "triton"),
                     bench=bench)


class MultiHeadAttention(nn.Module):
    """Self-attention with separate q/k/v projections (maps 1:1 onto BERT and timm weights)."""

    def __init__(self, width: int, heads: int, impl: str = "sdpa", dropout: float = 0.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.impl = impl
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, s, w = x.shape
        return x.view(b, s, self.heads, w // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                return_probs: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        probs = None
        if return_probs:
            # The probabilities stay in the graph so Grad-CAM can take gradients w.r.t. them.
            probs = attention_probs(q, k, key_padding_mask)
            ctx = torch.matmul(probs, v)
        else:
            ctx = attention(q, k, v, key_padding_mask, self.impl)
        b, h, s, d = ctx.shape
        ctx = ctx.transpose(1, 2).reshape(b, s, h * d)
        return self.dropout(self.out(ctx)), probs
