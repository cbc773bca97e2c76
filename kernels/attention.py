"""Fused multi-head attention with a key-padding mask (flash-attention style, Triton).

Forward: one program per (query block, batch*head); keys are visited in tiles with an online
softmax in fp32, so the [Sq, Sk] score matrix never exists; the row's log-sum-exp (base 2)
is stored for the backward. Backward: two kernels that recompute the probabilities from the
stored log-sum-exp: one per key block (dK, dV, no atomics) and one per query block (dQ).

Padding semantics (shared with ``attention_reference``): ``key_padding_mask[b, j] = True``
means key j of batch element b is ignored; a query row whose keys are all padding returns
zeros, and its gradients are zeros (never NaN).
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kernels.dispatch import dot_in_fp32, interpreter_enabled, select_impl
from kernels.tuning import LaunchConfig, launch_tuned

LOG2E = 1.4426950408889634

# Block sizes in the interpreter: small, so that tiny test shapes still cross tile borders.
_INTERP_BLOCK = 16


@triton.jit
def _attn_fwd_kernel(
    Q, K, V, Mask, O, LSE,
    sqb, sqh, sqm, sqd,
    skb, skh, skn, skd,
    svb, svh, svn, svd,
    sob, soh, som, sod,
    smb,
    H, SEQ_Q, SEQ_K, HEAD_DIM, qk_scale,
    HAS_MASK: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < SEQ_Q
    d_ok = offs_d < HEAD_DIM

    q_base = Q + b.to(tl.int64) * sqb + h.to(tl.int64) * sqh
    k_base = K + b.to(tl.int64) * skb + h.to(tl.int64) * skh
    v_base = V + b.to(tl.int64) * svb + h.to(tl.int64) * svh

    q = tl.load(q_base + offs_m[:, None] * sqm + offs_d[None, :] * sqd,
                mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    if DOT_FP32:
        q = q.to(tl.float32)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    m_safe = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start_n in range(0, SEQ_K, BLOCK_N):
        cols = start_n + offs_n
        col_ok = cols < SEQ_K
        if HAS_MASK:
            pad = tl.load(Mask + b.to(tl.int64) * smb + cols, mask=col_ok, other=1)
            col_ok = col_ok & (pad == 0)
        kt = tl.load(k_base + cols[None, :] * skn + offs_d[:, None] * skd,
                     mask=(cols[None, :] < SEQ_K) & d_ok[:, None], other=0.0)
        v = tl.load(v_base + cols[:, None] * svn + offs_d[None, :] * svd,
                    mask=(cols[:, None] < SEQ_K) & d_ok[None, :], other=0.0)
        if DOT_FP32:
            kt = kt.to(tl.float32)
            v = v.to(tl.float32)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        s = tl.where(col_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # A row with no valid key so far keeps m = -inf; shift by 0 then so exp2 gives 0, not NaN.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new

    empty = l_i == 0.0
    out = acc / tl.where(empty, 1.0, l_i)[:, None]
    lse = tl.where(empty, 0.0, m_safe + tl.log2(tl.where(empty, 1.0, l_i)))
    o_base = O + b.to(tl.int64) * sob + h.to(tl.int64) * soh
    tl.store(o_base + offs_m[:, None] * som + offs_d[None, :] * sod,
             out.to(O.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])
    tl.store(LSE + pid_bh.to(tl.int64) * SEQ_Q + offs_m, lse, mask=row_ok)


@triton.jit
def _attn_bwd_dkdv_kernel(
    Q, K, V, Mask, DO, LSE, DELTA, DK, DV,
    sqb, sqh, sqm, sqd,
    skb, skh, skn, skd,
    svb, svh, svn, svd,
    sdob, sdoh, sdom, sdod,
    sgb, sgh, sgn, sgd,
    smb,
    H, SEQ_Q, SEQ_K, HEAD_DIM, qk_scale, sm_scale,
    HAS_MASK: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    key_in = offs_n < SEQ_K
    col_ok = key_in
    if HAS_MASK:
        pad = tl.load(Mask + b.to(tl.int64) * smb + offs_n, mask=key_in, other=1)
        col_ok = col_ok & (pad == 0)

    k = tl.load(K + b.to(tl.int64) * skb + h.to(tl.int64) * skh
                + offs_n[:, None] * skn + offs_d[None, :] * skd,
                mask=key_in[:, None] & d_ok[None, :], other=0.0)
    v = tl.load(V + b.to(tl.int64) * svb + h.to(tl.int64) * svh
                + offs_n[:, None] * svn + offs_d[None, :] * svd,
                mask=key_in[:, None] & d_ok[None, :], other=0.0)
    if DOT_FP32:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    q_base = Q + b.to(tl.int64) * sqb + h.to(tl.int64) * sqh
    do_base = DO + b.to(tl.int64) * sdob + h.to(tl.int64) * sdoh

    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    for start_m in range(0, SEQ_Q, BLOCK_M):
        rows = start_m + offs_m
        row_ok = rows < SEQ_Q
        q = tl.load(q_base + rows[:, None] * sqm + offs_d[None, :] * sqd,
                    mask=row_ok[:, None] & d_ok[None, :], other=0.0)
        do = tl.load(do_base + rows[:, None] * sdom + offs_d[None, :] * sdod,
                     mask=row_ok[:, None] & d_ok[None, :], other=0.0)
        if DOT_FP32:
            q = q.to(tl.float32)
            do = do.to(tl.float32)
        lse = tl.load(LSE + pid_bh.to(tl.int64) * SEQ_Q + rows, mask=row_ok, other=0.0)
        delta = tl.load(DELTA + pid_bh.to(tl.int64) * SEQ_Q + rows, mask=row_ok, other=0.0)
        # Scores transposed ([keys, queries]) so that dV and dK need no transposed operand.
        st = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale
        pt = tl.exp2(st - lse[None, :])
        pt = tl.where(col_ok[:, None] & row_ok[None, :], pt, 0.0)
        dv += tl.dot(pt.to(do.dtype), do, input_precision=PRECISION)
        dpt = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        dst = pt * (dpt - delta[None, :])
        dk += tl.dot(dst.to(q.dtype), q, input_precision=PRECISION)
    dk = dk * sm_scale

    g_off = b.to(tl.int64) * sgb + h.to(tl.int64) * sgh + offs_n[:, None] * sgn + offs_d[None, :] * sgd
    g_mask = key_in[:, None] & d_ok[None, :]
    tl.store(DK + g_off, dk.to(DK.dtype.element_ty), mask=g_mask)
    tl.store(DV + g_off, dv.to(DV.dtype.element_ty), mask=g_mask)


@triton.jit
def _attn_bwd_dq_kernel(
    Q, K, V, Mask, O, DO, LSE, DELTA, DQ,
    sqb, sqh, sqm, sqd,
    skb, skh, skn, skd,
    svb, svh, svn, svd,
    sob, soh, som, sod,
    sdob, sdoh, sdom, sdod,
    sgb, sgh, sgm, sgd,
    smb,
    H, SEQ_Q, SEQ_K, HEAD_DIM, qk_scale, sm_scale,
    HAS_MASK: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    row_ok = offs_m < SEQ_Q

    q = tl.load(Q + b.to(tl.int64) * sqb + h.to(tl.int64) * sqh
                + offs_m[:, None] * sqm + offs_d[None, :] * sqd,
                mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    do = tl.load(DO + b.to(tl.int64) * sdob + h.to(tl.int64) * sdoh
                 + offs_m[:, None] * sdom + offs_d[None, :] * sdod,
                 mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    if DOT_FP32:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    lse = tl.load(LSE + pid_bh.to(tl.int64) * SEQ_Q + offs_m, mask=row_ok, other=0.0)
    # delta_i = sum_d dO_id O_id, computed here for this block's rows and stored for the
    # dK/dV kernel, which runs next.
    o = tl.load(O + b.to(tl.int64) * sob + h.to(tl.int64) * soh
                + offs_m[:, None] * som + offs_d[None, :] * sod,
                mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + pid_bh.to(tl.int64) * SEQ_Q + offs_m, delta, mask=row_ok)
    k_base = K + b.to(tl.int64) * skb + h.to(tl.int64) * skh
    v_base = V + b.to(tl.int64) * svb + h.to(tl.int64) * svh

    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start_n in range(0, SEQ_K, BLOCK_N):
        cols = start_n + offs_n
        key_in = cols < SEQ_K
        col_ok = key_in
        if HAS_MASK:
            pad = tl.load(Mask + b.to(tl.int64) * smb + cols, mask=key_in, other=1)
            col_ok = col_ok & (pad == 0)
        k = tl.load(k_base + cols[:, None] * skn + offs_d[None, :] * skd,
                    mask=key_in[:, None] & d_ok[None, :], other=0.0)
        vt = tl.load(v_base + cols[None, :] * svn + offs_d[:, None] * svd,
                     mask=key_in[None, :] & d_ok[:, None], other=0.0)
        if DOT_FP32:
            k = k.to(tl.float32)
            vt = vt.to(tl.float32)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        p = tl.exp2(s - lse[:, None])
        p = tl.where(row_ok[:, None] & col_ok[None, :], p, 0.0)
        dp = tl.dot(do, vt, input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    dq = dq * sm_scale
    tl.store(DQ + b.to(tl.int64) * sgb + h.to(tl.int64) * sgh
             + offs_m[:, None] * sgm + offs_d[None, :] * sgd,
             dq.to(DQ.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])


# Tried once per shape on CUDA (block_m, block_n, num_warps, num_stages); the interpreter
# takes one small block so that tiny test shapes still cross tile borders.
_FWD_CONFIGS = [LaunchConfig(128, 64, 4, 3), LaunchConfig(128, 128, 8, 3),
                LaunchConfig(64, 64, 4, 3), LaunchConfig(128, 32, 4, 4)]
_DKDV_CONFIGS = [LaunchConfig(32, 128, 8, 2), LaunchConfig(64, 128, 8, 2),
                 LaunchConfig(32, 64, 4, 3), LaunchConfig(64, 64, 4, 2)]
_DQ_CONFIGS = [LaunchConfig(128, 32, 8, 2), LaunchConfig(128, 64, 8, 2),
               LaunchConfig(64, 64, 4, 3), LaunchConfig(64, 32, 4, 3)]
_INTERP_CONFIGS = [LaunchConfig(_INTERP_BLOCK, _INTERP_BLOCK, 4, 1)]


def _configs(cuda_configs: list[LaunchConfig]) -> list[LaunchConfig]:
    return _INTERP_CONFIGS if interpreter_enabled() else cuda_configs


def _mask_arg(mask_i8: torch.Tensor | None, q: torch.Tensor) -> tuple[torch.Tensor, int]:
    if mask_i8 is None:
        return q, 0  # any pointer: never read when HAS_MASK is False
    return mask_i8, mask_i8.stride(0)


def _precision(dtype: torch.dtype) -> str:
    # fp32 inputs get IEEE dots (true fp32), half types the tensor cores' native path.
    return "ieee" if dtype == torch.float32 else "tf32"


def _triton_forward(q, k, v, mask, sm_scale):
    B, H, Sq, D = q.shape
    Sk = k.shape[2]
    o = torch.empty((B, H, Sq, D), dtype=q.dtype, device=q.device)
    lse = torch.empty((B * H, Sq), dtype=torch.float32, device=q.device)
    m, smb = _mask_arg(mask, q)
    block_d = max(16, triton.next_power_of_2(D))
    dot_fp32 = dot_in_fp32(q.dtype)
    launch_tuned(
        _attn_fwd_kernel, lambda c: (triton.cdiv(Sq, c.block_m), B * H),
        (q, k, v, m, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(), smb,
         H, Sq, Sk, D, sm_scale * LOG2E),
        dict(HAS_MASK=mask is not None, DOT_FP32=dot_fp32, PRECISION=_precision(q.dtype),
             BLOCK_D=block_d),
        ("fwd", q.device, q.dtype, Sq, Sk, D, mask is not None), _configs(_FWD_CONFIGS))
    return o, lse


def _triton_backward(do, q, k, v, o, lse, mask, sm_scale):
    B, H, Sq, D = q.shape
    Sk = k.shape[2]
    delta = torch.empty((B * H, Sq), dtype=torch.float32, device=q.device)
    dq = torch.empty((B, H, Sq, D), dtype=q.dtype, device=q.device)
    dk = torch.empty((B, H, Sk, D), dtype=k.dtype, device=k.device)
    dv = torch.empty((B, H, Sk, D), dtype=v.dtype, device=v.device)
    m, smb = _mask_arg(mask, q)
    block_d = max(16, triton.next_power_of_2(D))
    common = dict(HAS_MASK=mask is not None, DOT_FP32=dot_in_fp32(q.dtype),
                  PRECISION=_precision(q.dtype), BLOCK_D=block_d)
    key = (q.device, q.dtype, Sq, Sk, D, mask is not None)
    # dQ first: it also computes delta = rowsum(dO * O), which the dK/dV kernel needs.
    launch_tuned(
        _attn_bwd_dq_kernel, lambda c: (triton.cdiv(Sq, c.block_m), B * H),
        (q, k, v, m, o, do, lse, delta, dq,
         *q.stride(), *k.stride(), *v.stride(), *o.stride(), *do.stride(), *dq.stride(), smb,
         H, Sq, Sk, D, sm_scale * LOG2E, sm_scale),
        common, ("dq",) + key, _configs(_DQ_CONFIGS))
    launch_tuned(
        _attn_bwd_dkdv_kernel, lambda c: (triton.cdiv(Sk, c.block_n), B * H),
        (q, k, v, m, do, lse, delta, dk, dv,
         *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dk.stride(), smb,
         H, Sq, Sk, D, sm_scale * LOG2E, sm_scale),
        common, ("dkdv",) + key, _configs(_DKDV_CONFIGS))
    return dq, dk, dv


class _FusedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, key_padding_mask, sm_scale):
        # int8 once, shared by forward and backward (the kernels read one byte per key)
        mask_i8 = None if key_padding_mask is None else key_padding_mask.to(torch.int8).contiguous()
        o, lse = _triton_forward(q, k, v, mask_i8, sm_scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.key_padding_mask = mask_i8
        ctx.sm_scale = sm_scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = _triton_backward(do, q, k, v, o, lse, ctx.key_padding_mask, ctx.sm_scale)
        return dq, dk, dv, None, None


def _check_shapes(q, k, v, key_padding_mask):
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"q, k, v must be [B, H, S, D]; got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    B, H, _, D = q.shape
    if k.shape[:2] != (B, H) or v.shape != k.shape or k.shape[3] != D:
        raise ValueError(f"k and v must be [B={B}, H={H}, Sk, D={D}]; got {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    if key_padding_mask is not None:
        if key_padding_mask.dtype != torch.bool:
            raise ValueError(f"key_padding_mask must be bool (True = padding), got "
                             f"{key_padding_mask.dtype}")
        if tuple(key_padding_mask.shape) != (B, k.shape[2]):
            raise ValueError(f"key_padding_mask must be [B={B}, Sk={k.shape[2]}], got "
                             f"{tuple(key_padding_mask.shape)}")


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    sm_scale: float | None = None,
    impl: str = "torch",
) -> torch.Tensor:
    """Eager PyTorch attention with the kernel's exact semantics (computed in fp32)."""
    _check_shapes(q, k, v, key_padding_mask)
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    if key_padding_mask is not None:
        s = s.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    m = s.amax(-1, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m).detach()
    p = torch.exp(s - m)
    denom = p.sum(-1, keepdim=True)
    # An all-padding row has p = 0 everywhere: divide by 1 so it returns zeros, not NaN.
    p = p / torch.where(denom == 0, torch.ones_like(denom), denom)
    return torch.matmul(p, v.float()).to(q.dtype)


def fused_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    sm_scale: float | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """Attention softmax(q k^T * sm_scale) v over non-padding keys; ``[B, H, Sq, D]``.

    ``key_padding_mask``: bool ``[B, Sk]``, True = padding. ``sm_scale`` defaults to
    1/sqrt(D). ``impl``: "auto" (Triton on CUDA, reference elsewhere), "triton", "torch".
    """
    _check_shapes(q, k, v, key_padding_mask)
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else float(sm_scale)
    if select_impl(impl, q, k, v, key_padding_mask) == "torch":
        return attention_reference(q, k, v, key_padding_mask, scale)
    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"fused_attention supports fp32/fp16/bf16, got {q.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    return _FusedAttention.apply(q, k, v, key_padding_mask, scale)
