"""Masked regression loss with target normalisation, fused in one Triton pass.

Per row i of ``pred``/``target`` ``[N, D]``: the target is normalised without affine
parameters and without gradient (``"layer"``: (t - mean) / sqrt(var + 1e-5), biased var;
``"l2"``: t / max(||t||, 1e-12); ``"none"``), then the row loss is

- ``smooth_l1``: mean over D of the smooth-L1 of (p - t) with ``beta`` (beta = 0 is L1);
- ``mse``: mean over D of (p - t)^2;
- ``cosine``: 2 - 2 cos(p, t), with norms clamped at 1e-8;

and the result is the mean of the row losses over rows where ``mask`` is True (0 if none).
One program handles a block of whole rows: it normalises the target, computes the loss and
d(loss)/d(pred) (already divided by the number of masked rows), and writes its block's share
of the mean; the backward only scales the stored gradient by the incoming scalar.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from kernels.dispatch import auto_impl, select_impl
from kernels.tuning import launch

KINDS = ("smooth_l1", "mse", "cosine")
TARGET_NORMS = ("layer", "l2", "none")
LAYER_EPS = 1e-5
L2_EPS = 1e-12
COS_EPS = 1e-8


@triton.jit
def _masked_regression_kernel(
    Pred, Target, Mask, NMasked, Partial, Grad,
    N, D, stride_p, stride_t, stride_g,
    beta, inv_beta,
    KIND: tl.constexpr, NORM: tl.constexpr, WRITE_GRAD: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_D)
    row_in = rows < N
    col_ok = cols < D
    picked = tl.load(Mask + rows, mask=row_in, other=0) != 0
    active = row_in & picked
    ld = active[:, None] & col_ok[None, :]
    rows64 = rows.to(tl.int64)
    p = tl.load(Pred + rows64[:, None] * stride_p + cols[None, :], mask=ld, other=0.0).to(tl.float32)
    t = tl.load(Target + rows64[:, None] * stride_t + cols[None, :], mask=ld, other=0.0).to(tl.float32)

    if NORM == 1:  # layer norm without affine
        mean = tl.sum(t, 1) / D
        tc = tl.where(ld, t - mean[:, None], 0.0)
        var = tl.sum(tc * tc, 1) / D
        t = tc * tl.rsqrt(var + 1e-5)[:, None]
    elif NORM == 2:  # L2 normalisation
        nrm = tl.sqrt(tl.sum(t * t, 1))
        t = t / tl.maximum(nrm, 1e-12)[:, None]

    n = tl.maximum(tl.load(NMasked).to(tl.float32), 1.0)
    if KIND == 0:  # smooth L1, mean over D
        d = p - t
        ad = tl.abs(d)
        small = ad < beta
        elem = tl.where(small, 0.5 * d * d * inv_beta, ad - 0.5 * beta)
        row_loss = tl.sum(tl.where(ld, elem, 0.0), 1) / D
        sign = tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0))
        g = tl.where(small, d * inv_beta, sign) / D
    elif KIND == 1:  # MSE, mean over D
        d = p - t
        row_loss = tl.sum(tl.where(ld, d * d, 0.0), 1) / D
        g = 2.0 * d / D
    else:  # 2 - 2 cos
        pn = tl.sqrt(tl.sum(p * p, 1))
        tn = tl.sqrt(tl.sum(t * t, 1))
        pn_c = tl.maximum(pn, 1e-8)
        tn_c = tl.maximum(tn, 1e-8)
        cos = tl.sum(p * t, 1) / (pn_c * tn_c)
        row_loss = 2.0 - 2.0 * cos
        # d cos / dp = t / (|p| |t|) - cos p / |p|^2 (the second term vanishes under the clamp)
        shrink = tl.where(pn > 1e-8, cos / (pn_c * pn_c), 0.0)
        g = -2.0 * (t / (pn_c * tn_c)[:, None] - shrink[:, None] * p)

    row_loss = tl.where(active, row_loss, 0.0)
    tl.store(Partial + pid, tl.sum(row_loss, 0) / n)
    if WRITE_GRAD:
        g = tl.where(ld, g / n, 0.0)
        tl.store(Grad + rows64[:, None] * stride_g + cols[None, :], g.to(Grad.dtype.element_ty),
                 mask=row_in[:, None] & col_ok[None, :])


def _blocks(D: int) -> tuple[int, int, int]:
    block_d = max(16, triton.next_power_of_2(D))
    block_r = max(1, min(16, 4096 // block_d))
    num_warps = 4 if block_d <= 1024 else 8
    return block_r, block_d, num_warps


class _MaskedRegression(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pred, target, mask, kind, beta, target_norm):
        N, D = pred.shape
        pred_c = pred if pred.stride(1) == 1 else pred.contiguous()
        target_c = target if target.stride(1) == 1 else target.contiguous()
        mask_i8 = mask.to(torch.int8).contiguous()
        n_masked = mask.sum().to(torch.float32).reshape(1)  # on device: no host sync
        block_r, block_d, num_warps = _blocks(D)
        n_blocks = max(1, triton.cdiv(N, block_r))
        partial = torch.zeros(n_blocks, dtype=torch.float32, device=pred.device)
        write_grad = bool(ctx.needs_input_grad[0])
        grad = torch.empty((N, D), dtype=pred.dtype, device=pred.device) if write_grad else partial
        if N > 0:
            launch(_masked_regression_kernel, (n_blocks,),
                   (pred_c, target_c, mask_i8, n_masked, partial, grad,
                    N, D, pred_c.stride(0), target_c.stride(0), grad.stride(0) if write_grad else 0,
                    float(beta), 1.0 / beta if beta > 0 else 0.0),
                   dict(KIND=KINDS.index(kind), NORM={"none": 0, "layer": 1, "l2": 2}[target_norm],
                        WRITE_GRAD=write_grad, BLOCK_R=block_r, BLOCK_D=block_d, num_warps=num_warps))
        elif write_grad:
            grad.zero_()
        ctx.grad = grad if write_grad else None
        return partial.sum()

    @staticmethod
    def backward(ctx, grad_out):
        g = None if ctx.grad is None else ctx.grad * grad_out.to(ctx.grad.dtype)
        ctx.grad = None
        return g, None, None, None, None, None


def normalize_target(target: torch.Tensor, target_norm: str) -> torch.Tensor:
    """The target normalisation of the loss, in fp32, detached."""
    t = target.detach().float()
    if target_norm == "layer":
        return torch.nn.functional.layer_norm(t, t.shape[-1:], eps=LAYER_EPS)
    if target_norm == "l2":
        return t / t.norm(dim=-1, keepdim=True).clamp_min(L2_EPS)
    return t


def masked_regression_reference(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    kind: str = "smooth_l1",
    beta: float = 1.0,
    target_norm: str = "layer",
    impl: str = "torch",
) -> torch.Tensor:
    """PyTorch reference: same semantics, computed in fp32 on the masked rows only."""
    p = pred[mask].float()
    t = normalize_target(target[mask], target_norm)
    if kind == "smooth_l1":
        per_row = torch.nn.functional.smooth_l1_loss(p, t, reduction="none", beta=beta).mean(-1)
    elif kind == "mse":
        per_row = ((p - t) ** 2).mean(-1)
    else:
        cos = (p * t).sum(-1) / (p.norm(dim=-1).clamp_min(COS_EPS) * t.norm(dim=-1).clamp_min(COS_EPS))
        per_row = 2.0 - 2.0 * cos
    return per_row.sum() / mask.sum().clamp_min(1).float()


def masked_regression_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    kind: str = "smooth_l1",
    beta: float = 1.0,
    target_norm: str = "layer",
    impl: str = "auto",
) -> torch.Tensor:
    """Mean over masked rows of the row loss of ``pred`` against the normalised ``target``.

    Returns an fp32 scalar; the target gets no gradient. See the module docstring for the
    exact definitions.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if target_norm not in TARGET_NORMS:
        raise ValueError(f"target_norm must be one of {TARGET_NORMS}, got {target_norm!r}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if pred.dim() != 2 or pred.shape != target.shape:
        raise ValueError(f"pred and target must be [N, D] of one shape; got {tuple(pred.shape)}, "
                         f"{tuple(target.shape)}")
    if mask.dtype != torch.bool or mask.shape != (pred.shape[0],):
        raise ValueError(f"mask must be bool [N={pred.shape[0]}], got {mask.dtype} "
                         f"{tuple(mask.shape)}")
    if impl == "auto" and pred.is_cuda:  # Triton only where it measured faster (dispatch.auto_impl)
        impl = auto_impl(f"masked_regression:{kind}:{beta}:{target_norm}", lambda name: functools.partial(
            masked_regression_loss, kind=kind, beta=beta, target_norm=target_norm, impl=name),
            (pred, target.detach(), mask))
    if select_impl(impl, pred, target, mask) == "torch":
        return masked_regression_reference(pred, target, mask, kind, beta, target_norm)
    return _MaskedRegression.apply(pred, target.detach(), mask, kind, float(beta), target_norm)
