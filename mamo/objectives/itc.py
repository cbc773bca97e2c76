"""Image-text contrastive loss with a queue of momentum features and momentum distillation.

Negatives are the in-batch features of every rank (student features, gathered; gradient
flows through this rank's own part) plus a queue of past momentum features. With
``alpha > 0`` the one-hot targets are mixed with the momentum model's softmaxed
similarities (ALBEF's momentum distillation). Ranks must have equal local batch sizes.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0 (identity when not distributed)."""
    rank, world = _world()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def gather_with_local_grad(x: torch.Tensor) -> torch.Tensor:
    """Like ``gather_no_grad`` but this rank's slice is ``x`` itself, so it keeps its graph."""
    rank, world = _world()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts, dim=0)


class FeatureQueue(nn.Module):
    """Ring buffers of L2-normalised momentum features, ``[size, dim]`` each, plus a pointer.

    All three are persistent buffers: they are in ``state_dict`` so a resumed run continues
    with the same negatives. Starts with random unit vectors (as ALBEF does).
    """

    def __init__(self, dim: int, size: int):
        super().__init__()
        self.size = size
        self.register_buffer("image_queue", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("text_queue", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, image_feat: torch.Tensor, text_feat: torch.Tensor) -> None:
        n = image_feat.shape[0]
        if self.size == 0 or n == 0:
            return
        start = self.ptr
        if n > self.size:  # only the newest `size` rows survive
            image_feat, text_feat = image_feat[n - self.size:], text_feat[n - self.size:]
            start = (start + (n - self.size)) % self.size
        idx = (start + torch.arange(image_feat.shape[0], device=self.ptr.device)) % self.size
        self.image_queue[idx] = image_feat.to(self.image_queue.dtype)
        self.text_queue[idx] = text_feat.to(self.text_queue.dtype)
        self.ptr.copy_((self.ptr + n) % self.size)


def _soft_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(F.log_softmax(logits.float(), dim=1) * targets).sum(dim=1).mean()


def itc_loss(image_feat: torch.Tensor, text_feat: torch.Tensor,
             image_feat_m: torch.Tensor, text_feat_m: torch.Tensor,
             queue: FeatureQueue | None, temp: torch.Tensor, alpha: float | torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE over (gathered batch + queue).

    ``alpha``: a float (0 = one-hot targets only) or a 0-dim tensor (a scheduled share, always
    mixed in: a tensor is never compared on the host, which would sync and break a graph).

    ``image_feat, text_feat [B,E]``: student features, L2-normalised. ``*_m``: the momentum
    model's features (no grad). Returns ``(loss, image_feat_m_all, text_feat_m_all)``; the
    latter two (gathered over ranks) are what the caller enqueues after the step.
    """
    rank, _ = _world()
    b = image_feat.shape[0]
    img_all = gather_with_local_grad(image_feat)
    txt_all = gather_with_local_grad(text_feat)
    img_m_all = gather_no_grad(image_feat_m)
    txt_m_all = gather_no_grad(text_feat_m)
    if queue is not None and queue.size > 0:
        img_q = queue.image_queue.detach().clone().to(image_feat.dtype)
        txt_q = queue.text_queue.detach().clone().to(text_feat.dtype)
    else:
        img_q = image_feat.new_zeros(0, image_feat.shape[1])
        txt_q = text_feat.new_zeros(0, text_feat.shape[1])
    sim_i2t = image_feat @ torch.cat([txt_all, txt_q]).t() / temp
    sim_t2i = text_feat @ torch.cat([img_all, img_q]).t() / temp
    with torch.no_grad():
        onehot = torch.zeros_like(sim_i2t, dtype=torch.float32)
        rows = torch.arange(b, device=onehot.device)
        onehot[rows, rank * b + rows] = 1.0
        if isinstance(alpha, torch.Tensor) or alpha > 0:
            sim_i2t_m = image_feat_m @ torch.cat([txt_m_all, txt_q]).t() / temp
            sim_t2i_m = text_feat_m @ torch.cat([img_m_all, img_q]).t() / temp
            tgt_i2t = alpha * F.softmax(sim_i2t_m.float(), dim=1) + (1 - alpha) * onehot
            tgt_t2i = alpha * F.softmax(sim_t2i_m.float(), dim=1) + (1 - alpha) * onehot
        else:
            tgt_i2t = tgt_t2i = onehot
    loss = 0.5 * (_soft_ce(sim_i2t, tgt_i2t) + _soft_ce(sim_t2i, tgt_t2i))
    return loss, img_m_all, txt_m_all
