"""Prediction heads on top of the fusion encoder's outputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Transform(nn.Module):
    """Linear -> GELU -> LayerNorm (the BERT prediction-head transform)."""

    def __init__(self, width: int, eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.gelu(self.dense(x)))


class RegressionHead(nn.Module):
    """Predicts a feature vector (implicit fusion target or explicit visual target)."""

    def __init__(self, width: int, out_dim: int):
        super().__init__()
        self.transform = Transform(width)
        self.proj = nn.Linear(width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.transform(x))


class ClassifierHead(nn.Module):
    """Transform + output layer; the output layer is exposed (``weight``/``bias``) so a fused
    linear+cross-entropy kernel can take the hidden states and the weight directly."""

    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.transform = Transform(width)
        self.decoder = nn.Linear(width, num_classes)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x))
