"""Task heads on the fused representation (the text [CLS] of the fusion encoder, ``h^w_cls``).

- ``VQAHead``: answer classification over the answer vocabulary (ours: a classifier, not
  ALBEF's generative decoder), trained with soft VQA targets (BCE), as in BUTD-style VQA.
- ``NLVR2Head``: each image is fused with the statement separately; the two pooled outputs are
  concatenated and classified true/false.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _MLP(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.LayerNorm(hidden),
                                 nn.Dropout(dropout), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VQAHead(nn.Module):
    """Fused [CLS] ``[B, D]`` -> answer logits ``[B, n_answers]``."""

    def __init__(self, width: int, num_answers: int, dropout: float = 0.1):
        super().__init__()
        self.num_answers = num_answers
        self.mlp = _MLP(width, 2 * width, num_answers, dropout)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.mlp(cls)

    @staticmethod
    def loss(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
        """BCE against ``min(count/3, 1)`` targets, summed over answers (scale-stable in the
        number of answers), averaged over the batch."""
        return F.binary_cross_entropy_with_logits(logits, soft_targets, reduction="sum") / logits.shape[0]


class NLVR2Head(nn.Module):
    """Two fused [CLS] ``[B, D]`` (left image + text, right image + text) -> logits ``[B, 2]``."""

    def __init__(self, width: int, dropout: float = 0.1):
        super().__init__()
        self.mlp = _MLP(2 * width, 2 * width, 2, dropout)

    def forward(self, cls_left: torch.Tensor, cls_right: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([cls_left, cls_right], dim=-1))
