"""The transformer block shared by the three encoders.

Pre-norm (``norm_first=True``) is the ViT/timm layout; post-norm is the BERT layout, kept
exact so that BERT/MiniLM checkpoints reproduce their reference outputs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mamo.model.attention import MultiHeadAttention


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Exact (erf) GELU: what BERT and timm ViT use.
        return self.dropout(self.fc2(F.gelu(self.fc1(x))))


def transformer_blocks(model: nn.Module) -> list["TransformerBlock"]:
    """Every transformer block in ``model`` (online encoders and momentum copy alike): the unit
    the trainer compiles, checkpoints and shards."""
    return [m for m in model.modules() if isinstance(m, TransformerBlock)]


class TransformerBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_dim: int, norm_first: bool, eps: float,
                 impl: str = "sdpa", dropout: float = 0.0):
        super().__init__()
        self.norm_first = norm_first
        self.attn = MultiHeadAttention(width, heads, impl=impl, dropout=dropout)
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.mlp = MLP(width, mlp_dim, dropout)
        self.norm2 = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                return_probs: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.norm_first:
            a, probs = self.attn(self.norm1(x), key_padding_mask, return_probs)
            x = x + a
            x = x + self.mlp(self.norm2(x))
        else:
            a, probs = self.attn(x, key_padding_mask, return_probs)
            x = self.norm1(x + a)
            x = self.norm2(x + self.mlp(x))
        return x, probs

    def set_attn_impl(self, impl: str) -> None:
        self.attn.impl = impl
