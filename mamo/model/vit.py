"""ViT image encoder: patches + [CLS] + learned positions, pre-norm blocks, final norm.

A masked patch's embedding is replaced by the learnable ``mask_token`` before the position
embedding is added (BEiT/MAMO). Position embeddings are interpolated (bicubic) when the
input grid differs from the configured one.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mamo.model.config import VisionConfig
from mamo.model.transformer import TransformerBlock


def interpolate_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resize ``[1, 1+N, D]`` position embeddings (first row = [CLS]) to a ``grid`` of patches."""
    n_old = pos_embed.shape[1] - 1
    side = int(math.isqrt(n_old))
    if side * side != n_old:
        raise ValueError(f"position embedding of {n_old} patches is not a square grid")
    if (side, side) == tuple(grid):
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    d = patch_pos.shape[-1]
    patch_pos = patch_pos.reshape(1, side, side, d).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(patch_pos.float(), size=grid, mode="bicubic", align_corners=False)
    patch_pos = patch_pos.to(pos_embed.dtype).permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], d)
    return torch.cat([cls_pos, patch_pos], dim=1)


class VisionTransformer(nn.Module):
    def __init__(self, cfg: VisionConfig, impl: str = "sdpa", dropout: float = 0.0):
        super().__init__()
        self.cfg = cfg
        self.patch_size = cfg.patch_size
        grid = cfg.image_size // cfg.patch_size
        self.patch_embed = nn.Conv2d(3, cfg.width, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, cfg.width))
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.width, cfg.heads, cfg.mlp_dim, norm_first=True,
                             eps=cfg.layer_norm_eps, impl=impl, dropout=dropout)
            for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def num_patches(self, image: torch.Tensor) -> int:
        return (image.shape[-2] // self.patch_size) * (image.shape[-1] // self.patch_size)

    def forward(self, image: torch.Tensor, patch_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``image [B,3,H,W]``, ``patch_mask`` bool ``[B,N]`` (True = masked) -> ``[B,1+N,D]``."""
        x = self.patch_embed(image)  # [B, D, gh, gw]
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)  # [B, N, D]
        if patch_mask is not None:
            x = torch.where(patch_mask[..., None], self.mask_token.to(x.dtype), x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = x + interpolate_pos_embed(self.pos_embed, grid).to(x.dtype)
        for block in self.blocks:
            x, _ = block(x)
        return self.norm(x)
