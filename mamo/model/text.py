"""BERT-style text encoder (embeddings + post-norm blocks), checkpoint-compatible with BERT.

Token type 0 is always added (as ``BertModel`` does with no ``token_type_ids``), so a loaded
BERT/MiniLM checkpoint reproduces ``BertModel.last_hidden_state``.
"""
from __future__ import annotations

import torch
from torch import nn

from mamo.model.config import TextConfig
from mamo.model.transformer import TransformerBlock


class TextEmbeddings(nn.Module):
    def __init__(self, cfg: TextConfig, dropout: float = 0.0):
        super().__init__()
        self.word_embed = nn.Embedding(cfg.vocab_size, cfg.width, padding_idx=0)
        self.position_embed = nn.Embedding(cfg.max_positions, cfg.width)
        self.type_embed = nn.Embedding(2, cfg.width)
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(dropout)
        for emb in (self.word_embed, self.position_embed, self.type_embed):
            nn.init.normal_(emb.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        if length > self.position_embed.num_embeddings:
            raise ValueError(f"text of {length} tokens exceeds max_positions="
                             f"{self.position_embed.num_embeddings}")
        pos = torch.arange(length, device=input_ids.device)
        x = self.word_embed(input_ids) + self.position_embed(pos)[None] + self.type_embed.weight[0]
        return self.dropout(self.norm(x))


class TextEncoder(nn.Module):
    def __init__(self, cfg: TextConfig, impl: str = "sdpa", dropout: float = 0.0):
        super().__init__()
        self.cfg = cfg
        self.embeddings = TextEmbeddings(cfg, dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.width, cfg.heads, cfg.mlp_dim, norm_first=False,
                             eps=cfg.layer_norm_eps, impl=impl, dropout=dropout)
            for _ in range(cfg.depth))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``input_ids, attention_mask [B,L]`` (mask 1 = real token) -> ``[B,L,D]``."""
        x = self.embeddings(input_ids)
        pad = attention_mask == 0
        for block in self.blocks:
            x, _ = block(x, pad)
        return x
