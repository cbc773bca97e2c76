"""Joint masking for MMM: block-wise patch masks and token masks, deterministic under a seed.

Both masks are drawn on the CPU from generators seeded by the caller, so a step seed fixes
them on every device. Each image gets exactly ``round(ratio * N)`` masked patches (blocks
first, BEiT-style, then single patches to reach the count), which keeps per-sample counts
equal.
"""
from __future__ import annotations

import math
import random

import torch

PAD_ID, CLS_ID, SEP_ID, MASK_ID = 0, 101, 102, 103
SPECIAL_IDS = (PAD_ID, CLS_ID, SEP_ID)


def _block_mask_one(gh: int, gw: int, num_masked: int, min_block: int, rng: random.Random,
                    max_attempts: int = 50) -> list[bool]:
    mask = [False] * (gh * gw)
    count = 0
    log_lo, log_hi = math.log(0.3), math.log(1 / 0.3)
    min_block = min(min_block, num_masked) if num_masked > 0 else min_block
    for _ in range(max_attempts):
        remaining = num_masked - count
        if remaining < min_block:
            break
        area = rng.uniform(min_block, remaining)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        bh = int(round(math.sqrt(area * aspect)))
        bw = int(round(math.sqrt(area / aspect)))
        if not (1 <= bh <= gh and 1 <= bw <= gw):
            continue
        top, left = rng.randint(0, gh - bh), rng.randint(0, gw - bw)
        cells = [r * gw + c for r in range(top, top + bh) for c in range(left, left + bw)]
        new = [i for i in cells if not mask[i]]
        if 0 < len(new) <= remaining:
            for i in new:
                mask[i] = True
            count += len(new)
    if count < num_masked:  # top up with single patches so every image has the same count
        free = [i for i, m in enumerate(mask) if not m]
        for i in rng.sample(free, num_masked - count):
            mask[i] = True
    return mask


@torch.compiler.disable  # Python-side RNG: never traced by torch.compile
def block_mask(batch: int, grid: tuple[int, int], ratio: float, min_block: int = 4,
               seed: int = 0) -> torch.Tensor:
    """Bool ``[batch, gh*gw]``, True = masked patch; exactly ``round(ratio*gh*gw)`` per row."""
    gh, gw = grid
    num_masked = int(round(ratio * gh * gw))
    rng = random.Random(seed)
    rows = [_block_mask_one(gh, gw, num_masked, min_block, rng) for _ in range(batch)]
    return torch.tensor(rows, dtype=torch.bool)


def to_device_async(mask: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host-made mask onto ``device`` without a sync: a copy from pinned memory is queued
    on the stream (from pageable memory CUDA would wait for the stream first)."""
    if device.type != "cuda":
        return mask.to(device)
    return mask.pin_memory().to(device, non_blocking=True)


def maskable_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Real tokens that are not [CLS]/[SEP]/[PAD]."""
    ok = attention_mask.bool()
    for sid in SPECIAL_IDS:
        ok &= input_ids != sid
    return ok


def _first_k(scores: torch.Tensor, allowed: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Bool ``[B, L]``: in each row, the ``k`` allowed positions of lowest score."""
    rank = scores.masked_fill(~allowed, 2.0).argsort(dim=1).argsort(dim=1)
    return (rank < k[:, None]) & allowed


@torch.compiler.disable
def text_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, ratio: float,
              seed: int = 0, content: torch.Tensor | None = None,
              content_share: float = 0.0) -> torch.Tensor:
    """Bool ``[B, L]``: ``round(ratio * n)`` (at least 1 when ratio > 0) of each row's n
    maskable tokens, chosen uniformly; with ``content`` (bool ``[B, L]``, e.g. the tokens
    that carry a concept label) and ``content_share`` > 0, that share of them is drawn from
    the content tokens first (as many as there are), the rest uniformly from what is left."""
    # Drawn on the batch's device from the step seed: no copy to the host and back (a sync
    # per step on a GPU). On the CPU this is the same draw as before.
    eligible = maskable_tokens(input_ids, attention_mask)
    n = eligible.sum(dim=1)
    k = torch.round(n.float() * ratio).long()
    if ratio > 0:
        k = torch.where(n > 0, k.clamp(min=1), k)
    gen = torch.Generator(device=input_ids.device).manual_seed(seed)
    scores = torch.rand(eligible.shape, generator=gen, device=input_ids.device)
    if content is None or content_share <= 0:
        return _first_k(scores, eligible, k)  # ineligible tokens sort last
    content = content.to(eligible.device) & eligible
    k_content = torch.minimum(torch.round(k.float() * content_share).long(), content.sum(dim=1))
    first = _first_k(scores, content, k_content)
    return first | _first_k(scores, eligible & ~first, k - k_content)


def apply_text_mask(input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return input_ids.masked_fill(mask, MASK_ID)
