"""Image-text matching with hard negatives sampled from the contrastive similarities.

For each image one negative text and for each text one negative image, drawn with
probability proportional to the softmaxed ITC similarity; positives are never drawn, nor
pairs that are detectably the same sample (identical ``input_ids`` rows or identical image
tensors in the batch).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


@torch.compiler.disable
@torch.no_grad()
def duplicate_pairs(input_ids: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
    """Bool ``[B,B]``: True where i and j are the same pair as far as the batch shows
    (diagonal, same caption ids, or same image tensor)."""
    same = (input_ids[:, None, :] == input_ids[None, :, :]).all(dim=-1)
    if image is not None:
        # A fixed random projection fingerprints each image without a B x B x CHW compare.
        flat = image.flatten(1).float()
        gen = torch.Generator().manual_seed(0)
        probe = torch.randn(flat.shape[1], 2, generator=gen).to(flat.device)
        fp = flat @ probe
        same |= torch.isclose(fp[:, None, :], fp[None, :, :], rtol=1e-6, atol=1e-6).all(dim=-1)
    same |= torch.eye(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    return same


@torch.compiler.disable  # seeded CPU sampling: keep it out of compiled graphs
@torch.no_grad()
def sample_hard_negatives(sim_i2t: torch.Tensor, exclude: torch.Tensor,
                          generator: torch.Generator | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """``sim_i2t [B,B]`` (image i vs text j), ``exclude [B,B]`` bool.

    Returns ``(neg_text_for_image [B], neg_image_for_text [B])``. A row with nothing left
    to draw from falls back to any index but its own (B >= 2 required).
    """
    b = sim_i2t.shape[0]
    if b < 2:
        raise ValueError("ITM hard negatives need a batch of at least 2")
    eye = torch.eye(b, dtype=torch.bool, device=sim_i2t.device)

    def weights(sim: torch.Tensor, excl: torch.Tensor) -> torch.Tensor:
        w = F.softmax(sim.float(), dim=1).masked_fill(excl, 0.0)
        w = torch.nan_to_num(w, nan=0.0)
        empty = w.sum(dim=1) <= 0
        fallback = (~eye).float()
        return torch.where(empty[:, None], fallback, w)

    w_i2t = weights(sim_i2t, exclude)
    w_t2i = weights(sim_i2t.t(), exclude.t())
    # Sampled on the CPU so a seeded generator gives the same draw on every device.
    neg_text = torch.multinomial(w_i2t.cpu(), 1, generator=generator).squeeze(1)
    neg_image = torch.multinomial(w_t2i.cpu(), 1, generator=generator).squeeze(1)
    return neg_text.to(sim_i2t.device), neg_image.to(sim_i2t.device)


def itm_loss(pair_logits: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
             image_embeds: torch.Tensor, text_embeds: torch.Tensor, attention_mask: torch.Tensor,
             neg_text: torch.Tensor, neg_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``pair_logits(image_embeds, text_embeds, mask) -> [N, 2]`` on B
    positives and 2B hard negatives in one fusion pass. Returns ``(loss, accuracy)``."""
    b = image_embeds.shape[0]
    img = torch.cat([image_embeds, image_embeds, image_embeds[neg_image]], dim=0)
    txt = torch.cat([text_embeds, text_embeds[neg_text], text_embeds], dim=0)
    am = torch.cat([attention_mask, attention_mask[neg_text], attention_mask], dim=0)
    logits = pair_logits(img, txt, am)
    labels = torch.cat([torch.ones(b, dtype=torch.long), torch.zeros(2 * b, dtype=torch.long)])
    labels = labels.to(logits.device)
    loss = F.cross_entropy(logits.float(), labels)
    acc = (logits.argmax(dim=1) == labels).float().mean().detach()
    return loss, acc
