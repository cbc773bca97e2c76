"""Loss primitives with an ``impl`` switch, so fused kernels plug in without model changes.

``impl="torch"`` computes here with plain PyTorch; ``impl="kernels"`` calls the functions of
the same contract in ``kernels/`` (docs/ARCHITECTURE.md section 4), which pick Triton on CUDA
and their own PyTorch reference elsewhere.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_IMPLS = ("torch", "kernels")


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         labels: torch.Tensor, ignore_index: int = -100,
                         impl: str = "torch") -> torch.Tensor:
    """Mean CE of ``hidden [N,D] @ weight[V,D].T + bias`` vs ``labels [N]`` over non-ignored
    rows; 0 (still in the graph) if every row is ignored. No host sync and no shape that
    depends on the labels: ignored rows are computed and left out of the sum."""
    if impl == "kernels":
        from kernels.cross_entropy import fused_linear_cross_entropy

        return fused_linear_cross_entropy(hidden, weight, bias, labels, ignore_index=ignore_index,
                                          impl="auto")
    if impl != "torch":
        raise ValueError(f"unknown loss impl {impl!r}; expected one of {LOSS_IMPLS}")
    n_valid = (labels != ignore_index).sum().clamp_min(1)
    logits = F.linear(hidden, weight, bias)
    total = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="sum")
    return total / n_valid


def normalise_target(target: torch.Tensor, target_norm: str) -> torch.Tensor:
    if target_norm == "layer":
        return F.layer_norm(target.float(), target.shape[-1:])
    if target_norm == "l2":
        return F.normalize(target.float(), dim=-1)
    if target_norm == "none":
        return target.float()
    raise ValueError(f"unknown target_norm {target_norm!r}")


def masked_regression_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                           kind: str = "smooth_l1", beta: float = 1.0,
                           target_norm: str = "none", impl: str = "torch") -> torch.Tensor:
    """Regression of ``pred [N,D]`` onto ``target [N,D]`` (no gradient) over rows ``mask [N]``.

    ``smooth_l1``/``mse``: mean over masked rows and feature dims; ``cosine``: ``2 - 2 cos``
    mean over masked rows. The target is normalised first (``layer``: layer norm without
    affine; ``l2``; ``none``). 0 (still in the graph) if no row is masked.
    """
    if impl == "kernels":
        from kernels.regression import masked_regression_loss as fused

        return fused(pred, target, mask, kind=kind, beta=beta, target_norm=target_norm, impl="auto")
    if impl != "torch":
        raise ValueError(f"unknown loss impl {impl!r}; expected one of {LOSS_IMPLS}")
    # Every row is computed and the unmasked ones left out of the mean: no host sync and no
    # shape that depends on the mask (torch.compile captures it in one graph).
    p = pred.float()
    t = normalise_target(target.detach(), target_norm)
    if kind == "smooth_l1":
        per_row = F.smooth_l1_loss(p, t, beta=beta, reduction="none").mean(dim=-1)
    elif kind == "mse":
        per_row = F.mse_loss(p, t, reduction="none").mean(dim=-1)
    elif kind == "cosine":
        per_row = 2.0 - 2.0 * F.cosine_similarity(p, t, dim=-1)
    else:
        raise ValueError(f"unknown regression kind {kind!r}")
    per_row = torch.where(mask, per_row, torch.zeros_like(per_row))
    return per_row.sum() / mask.sum().clamp_min(1)
