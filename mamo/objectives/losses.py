"""Loss primitives with an ``impl`` switch, so fused kernels plug in without model changes.

``impl="torch"`` computes here with plain PyTorch; ``impl="kernels"`` calls the functions of
the same contract in ``kernels/`` (docs/ARCHITECTURE.md section 4), which pick Triton on CUDA
and their own PyTorch reference elsewhere.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_IMPLS = ("torch", "kernels")


def _zero_touching(*tensors: torch.Tensor | None) -> torch.Tensor:
    """A 0 that still depends on every tensor, so DDP sees each parameter used."""
    out = None
    for t in tensors:
        if t is None:
            continue
        term = t.sum() * 0.0
        out = term if out is None else out + term
    return out.float()


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         labels: torch.Tensor, ignore_index: int = -100,
                         impl: str = "torch") -> torch.Tensor:
    """Mean CE of ``hidden [N,D] @ weight[V,D].T + bias`` vs ``labels [N]`` over non-ignored
    rows; 0 (still in the graph) if every row is ignored."""
    if impl == "kernels":
        from kernels.cross_entropy import fused_linear_cross_entropy

        return fused_linear_cross_entropy(hidden, weight, bias, labels, ignore_index=ignore_index,
                                          impl="auto")
    if impl != "torch":
        raise ValueError(f"unknown loss impl {impl!r}; expected one of {LOSS_IMPLS}")
    valid = labels != ignore_index
    if not bool(valid.any()):
        return _zero_touching(hidden, weight, bias)
    logits = F.linear(hidden[valid], weight, bias)
    return F.cross_entropy(logits.float(), labels[valid])


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
    if not bool(mask.any()):
        return _zero_touching(pred)
    p = pred[mask].float()
    t = normalise_target(target[mask].detach(), target_norm)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(p, t, beta=beta)
    if kind == "mse":
        return F.mse_loss(p, t)
    if kind == "cosine":
        return (2.0 - 2.0 * F.cosine_similarity(p, t, dim=-1)).mean()
    raise ValueError(f"unknown regression kind {kind!r}")
