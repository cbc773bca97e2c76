"""Merged-attention fusion encoder over ``[image tokens; text tokens]``.

Self-attention over the concatenation (plus a modality-type embedding) gives image positions
multimodal representations too, which the implicit MMM target needs. Every layer's output is
kept (``FusionOutput.layers``) for the top-K teacher targets; the last layer's attention
probabilities can be returned for Grad-CAM grounding.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mamo.model.config import FusionConfig
from mamo.model.transformer import TransformerBlock


@dataclass
class FusionOutput:
    hidden: torch.Tensor  # [B, Nv+L, D] last layer, image positions first
    layers: list[torch.Tensor]  # every layer's output, each [B, Nv+L, D]
    num_image_tokens: int  # Nv = 1 + number of patches
    attention: torch.Tensor | None = None  # last layer probs [B, H, Nv+L, Nv+L] if asked

    @property
    def image_hidden(self) -> torch.Tensor:
        return self.hidden[:, : self.num_image_tokens]

    @property
    def text_hidden(self) -> torch.Tensor:
        return self.hidden[:, self.num_image_tokens:]

    @property
    def text_cls(self) -> torch.Tensor:
        """Fused ``h^w_cls``: the ITM / VQA representation of the pair."""
        return self.hidden[:, self.num_image_tokens]

    def text_to_image_attention(self) -> torch.Tensor:
        """``[B, H, L, Nv]``: text queries attending to image keys (incl. image [CLS])."""
        if self.attention is None:
            raise ValueError("fuse(..., return_attention=True) was not requested")
        n = self.num_image_tokens
        return self.attention[:, :, n:, :n]


class FusionEncoder(nn.Module):
    def __init__(self, cfg: FusionConfig, width: int, image_width: int, impl: str = "sdpa",
                 dropout: float = 0.0):
        super().__init__()
        self.cfg = cfg
        # Image tokens come in the image encoder's width; project when it differs.
        self.image_in = nn.Linear(image_width, width) if image_width != width else nn.Identity()
        # Zero-initialised so that fusion layers started from BERT see unshifted inputs.
        self.modality_embed = nn.Parameter(torch.zeros(2, width))
        self.blocks = nn.ModuleList(
            TransformerBlock(width, cfg.heads, cfg.mlp_dim, norm_first=False,
                             eps=cfg.layer_norm_eps, impl=impl, dropout=dropout)
            for _ in range(cfg.depth))

    def forward(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                attention_mask: torch.Tensor, return_attention: bool = False) -> FusionOutput:
        img = self.image_in(image_embeds) + self.modality_embed[0]
        txt = text_embeds + self.modality_embed[1]
        x = torch.cat([img, txt], dim=1)
        nv = img.shape[1]
        pad = torch.cat([torch.zeros(img.shape[:2], dtype=torch.bool, device=x.device),
                         attention_mask == 0], dim=1)
        layers = []
        probs = None
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            x, p = block(x, pad, return_probs=return_attention and last)
            if p is not None:
                probs = p
            layers.append(x)
        return FusionOutput(hidden=x, layers=layers, num_image_tokens=nv, attention=probs)
