"""Image-text matching with hard negatives sampled from the contrastive similarities.

For each image one negative text and for each text one negative image, drawn with
probability proportional to the softmaxed ITC similarity; positives are never drawn, nor
pairs that are detectably the same sample (identical ``input_ids`` rows or identical image
tensors in the batch). In distributed runs the candidates are the global batch (every
rank's features, as in ALBEF); the gradient flows through this rank's own part.
"""
from __future__ import annotations


from typing import Callable

import torch
import torch.nn.functional as F


@torch.no_grad()
def image_fingerprint(image: torch.Tensor) -> torch.Tensor:
    """``[B, 2]``: a fixed random projection of each image, to spot identical images without
    a B x B x CHW compare (and without gathering whole images across ranks)."""
    flat = image.flatten(1).float()
    # a fixed pseudo-random projection made on the device (no generator, no host copy)
    i = torch.arange(flat.shape[1], device=flat.device, dtype=torch.float32)
    probe = torch.stack([torch.sin(i * 12.9898 + 1.0), torch.cos(i * 78.233 + 2.0)], dim=1)
    return flat @ probe


@torch.no_grad()
def duplicate_pairs(input_ids: torch.Tensor, image: torch.Tensor | None = None, *,
                    all_input_ids: torch.Tensor | None = None,
                    all_fingerprints: torch.Tensor | None = None, offset: int = 0) -> torch.Tensor:
    """Bool ``[B, G]``: True where local item i and candidate j are the same pair as far as
    the batch shows (i's own pair at ``offset + i``, same caption ids, or same image).

    Without ``all_*`` the candidates are the local batch itself (``G = B``, ``offset = 0``).
    """
    cand_ids = input_ids if all_input_ids is None else all_input_ids
    same = (input_ids[:, None, :] == cand_ids[None, :, :]).all(dim=-1)
    if image is not None:
        fp = image_fingerprint(image)
        cand_fp = fp if all_fingerprints is None else all_fingerprints
        same |= torch.isclose(fp[:, None, :], cand_fp[None, :, :], rtol=1e-6, atol=1e-6).all(dim=-1)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    same[rows, rows + offset] = True
    return same


@torch.no_grad()
def sample_hard_negatives(sim_i2t: torch.Tensor, exclude: torch.Tensor,
                          generator: torch.Generator | None = None,
                          sim_t2i: torch.Tensor | None = None, offset: int = 0,
                          uniform: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``sim_i2t [B,G]`` (local image i vs candidate text j), ``exclude [B,G]`` bool.

    ``sim_t2i [B,G]`` (local text i vs candidate image j) defaults to ``sim_i2t.t()`` for the
    square, single-batch case; ``exclude`` serves both directions (it says which candidates
    are the same pair). Returns ``(neg_text_for_image [B], neg_image_for_text [B])``, indices
    into the candidates. A row with nothing left to draw from falls back to any candidate but
    its own pair at ``offset + i`` (G >= 2 required). Drawn with ``generator`` by
    ``torch.multinomial``, or, with ``uniform [2, B]`` in (0, 1] (the training step's draws,
    made on the device beforehand), by inverse CDF inside the graph.
    """
    if sim_t2i is None:
        sim_t2i = sim_i2t.t()
    b, g = sim_i2t.shape
    if g < 2:
        raise ValueError("ITM hard negatives need a batch of at least 2")
    own = torch.zeros(b, g, dtype=torch.bool, device=sim_i2t.device)
    own[torch.arange(b, device=own.device), torch.arange(b, device=own.device) + offset] = True

    def weights(sim: torch.Tensor, excl: torch.Tensor) -> torch.Tensor:
        w = F.softmax(sim.float(), dim=1).masked_fill(excl, 0.0)
        w = torch.nan_to_num(w, nan=0.0)
        empty = w.sum(dim=1) <= 0
        fallback = (~own).float()
        return torch.where(empty[:, None], fallback, w)

    w_i2t = weights(sim_i2t, exclude)
    w_t2i = weights(sim_t2i, exclude)
    if uniform is not None:
        return sample_by_uniform(w_i2t, w_t2i, uniform)
    # Sampled where the weights are, with the caller's generator (on their device): no copy
    # to the host (a sync per step on a GPU). A CPU generator still works for CPU weights.
    if generator is not None and generator.device != w_i2t.device:
        w_i2t, w_t2i = w_i2t.to(generator.device), w_t2i.to(generator.device)
    neg_text = torch.multinomial(w_i2t, 1, generator=generator).squeeze(1)
    neg_image = torch.multinomial(w_t2i, 1, generator=generator).squeeze(1)
    return neg_text.to(sim_i2t.device), neg_image.to(sim_i2t.device)


@torch.no_grad()
def sample_by_uniform(w_i2t: torch.Tensor, w_t2i: torch.Tensor, uniform: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """One candidate per row of each weight matrix ``[B, G]`` (rows need not be normalised),
    by inverse CDF at ``uniform [2, B]`` in (0, 1]: the draw of ``torch.multinomial`` without a
    generator inside the graph (torch.compile captures it; a zero weight is never picked)."""
    def pick(w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        cdf = w.cumsum(dim=1)
        return (cdf < u[:, None] * cdf[:, -1:]).sum(dim=1).clamp_max(w.shape[1] - 1)

    return pick(w_i2t, uniform[0]), pick(w_t2i, uniform[1])


def itm_loss(pair_logits: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
             image_embeds: torch.Tensor, text_embeds: torch.Tensor, attention_mask: torch.Tensor,
             neg_text: torch.Tensor, neg_image: torch.Tensor,
             image_pool: torch.Tensor | None = None, text_pool: torch.Tensor | None = None,
             mask_pool: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``pair_logits(image_embeds, text_embeds, mask) -> [N, 2]`` on B
    positives and 2B hard negatives in one fusion pass. Negatives index the candidate pools
    (the global batch in distributed runs; the local batch by default).
    Returns ``(loss, accuracy)``."""
    image_pool = image_embeds if image_pool is None else image_pool
    text_pool = text_embeds if text_pool is None else text_pool
    mask_pool = attention_mask if mask_pool is None else mask_pool
    b = image_embeds.shape[0]
    img = torch.cat([image_embeds, image_embeds, image_pool[neg_image]], dim=0)
    txt = torch.cat([text_embeds, text_pool[neg_text], text_embeds], dim=0)
    am = torch.cat([attention_mask, mask_pool[neg_text], attention_mask], dim=0)
    logits = pair_logits(img, txt, am)
    # made on the device: a host tensor copied per step would wait for the GPU queue
    labels = (torch.arange(3 * b, device=logits.device) < b).long()
    loss = F.cross_entropy(logits.float(), labels)
    acc = (logits.argmax(dim=1) == labels).float().mean().detach()
    return loss, acc


def global_hard_negatives(image_feat: torch.Tensor, text_feat: torch.Tensor,
                          input_ids: torch.Tensor, image: torch.Tensor, temp: torch.Tensor,
                          generator: torch.Generator | None = None, uniform: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Hard negatives for this rank's B pairs among every rank's pairs (the local batch when
    not distributed). Returns ``(neg_text, neg_image, offset)``: indices into the gathered
    candidates, and where this rank's own pairs start among them."""
    from mamo.objectives.itc import _world, gather_no_grad

    rank, world = _world()
    with torch.no_grad():
        if world == 1:
            sim = image_feat @ text_feat.t() / temp
            exclude = duplicate_pairs(input_ids, image)
            neg_text, neg_image = sample_hard_negatives(sim, exclude, generator, uniform=uniform)
            return neg_text, neg_image, 0
        offset = rank * input_ids.shape[0]
        text_all = gather_no_grad(text_feat)
        image_all = gather_no_grad(image_feat)
        exclude = duplicate_pairs(input_ids, image, all_input_ids=gather_no_grad(input_ids),
                                  all_fingerprints=gather_no_grad(image_fingerprint(image)),
                                  offset=offset)
        neg_text, neg_image = sample_hard_negatives(
            image_feat @ text_all.t() / temp, exclude, generator,
            sim_t2i=text_feat @ image_all.t() / temp, offset=offset, uniform=uniform)
        return neg_text, neg_image, offset
