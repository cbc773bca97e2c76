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

import functools
import math

import torch
import triton
import triton.language as tl

from torch.utils.flop_counter import register_flop_formula, sdpa_backward_flop_count, sdpa_flop_count

from kernels.dispatch import dot_in_fp32, interpreter_enabled, select_impl
from kernels.tuning import LaunchConfig, launch_tuned

LOG2E = 1.4426950408889634

# Block sizes in the interpreter: small, so that tiny test shapes still cross tile borders.
_INTERP_BLOCK = 16


@triton.jit
def _valid_keys(Mask, b, cols, SEQ_K, HAS_MASK: tl.constexpr):
    """Keys in range and, with a mask, not padding (Mask: contiguous bool [B, SEQ_K])."""
    key_in = cols < SEQ_K
    if HAS_MASK:
        pad = tl.load(Mask + b * SEQ_K + cols, mask=key_in, other=1)
        return key_in, key_in & (pad == 0)
    return key_in, key_in


@triton.jit
def _query_rows(Q, DO, O, ptr, mask, DOT_FP32: tl.constexpr):
    """q and dO rows (upcast when DOT_FP32) and delta = rowsum(dO * O) in fp32."""
    q = tl.load(Q + ptr, mask=mask, other=0.0)
    do = tl.load(DO + ptr, mask=mask, other=0.0)
    o = tl.load(O + ptr, mask=mask, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    if DOT_FP32:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    return q, do, delta


@triton.jit
def _attn_fwd_kernel(
    Q, K, V, Mask, O, LSE,
    sqb, sqh, sqm,
    skb, skh, skn,
    H, SEQ_Q, SEQ_K, qk_scale,
    HAS_MASK: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # Layout contract (see _prepare): Q and O share strides (sqb, sqh, sqm, 1), K and V share
    # (skb, skh, skn, 1), Mask is a contiguous bool [B, SEQ_K]. Few arguments = less host time
    # per launch, which is what small MAMO shapes are bound by.
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < SEQ_Q
    d_ok = offs_d < HEAD_DIM

    q_off = b * sqb + h * sqh
    k_base = K + b * skb + h * skh
    v_base = V + b * skb + h * skh

    q = tl.load(Q + q_off + offs_m[:, None] * sqm + offs_d[None, :],
                mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    if DOT_FP32:
        q = q.to(tl.float32)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    m_safe = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start_n in range(0, SEQ_K, BLOCK_N):
        cols = start_n + offs_n
        key_in, col_ok = _valid_keys(Mask, b, cols, SEQ_K, HAS_MASK)
        kt = tl.load(k_base + cols[None, :] * skn + offs_d[:, None],
                     mask=key_in[None, :] & d_ok[:, None], other=0.0)
        v = tl.load(v_base + cols[:, None] * skn + offs_d[None, :],
                    mask=key_in[:, None] & d_ok[None, :], other=0.0)
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
    tl.store(O + q_off + offs_m[:, None] * sqm + offs_d[None, :],
             out.to(O.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])
    tl.store(LSE + pid_bh.to(tl.int64) * SEQ_Q + offs_m, lse, mask=row_ok)


@triton.jit
def _attn_bwd_kernel(
    Q, K, V, Mask, O, DO, LSE, DQ, DK, DV,
    sqb, sqh, sqm,
    skb, skh, skn,
    H, SEQ_Q, SEQ_K, qk_scale, sm_scale,
    HAS_MASK: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # One launch for the whole backward: program i makes dK/dV for key block i (walking query
    # tiles of BLOCK_M) and then dQ for query block i (walking key tiles of BLOCK_M).
    # delta = rowsum(dO * O) is recomputed from the tiles where it is needed instead of by a
    # separate kernel: one more tile load per step, one launch less.
    # Layout contract as in the forward; DO, DQ share Q's strides, DK, DV share K's.
    pid = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    q_off = b * sqb + h * sqh
    k_off = b * skb + h * skh
    lse_base = LSE + pid_bh.to(tl.int64) * SEQ_Q
    tile = tl.arange(0, BLOCK_M)

    # ---- dK, dV for keys [pid * BLOCK_N, +BLOCK_N)
    if pid * BLOCK_N < SEQ_K:
        offs_n = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        key_in, col_ok = _valid_keys(Mask, b, offs_n, SEQ_K, HAS_MASK)
        kv_ptr = offs_n[:, None] * skn + offs_d[None, :]
        kv_mask = key_in[:, None] & d_ok[None, :]
        k = tl.load(K + k_off + kv_ptr, mask=kv_mask, other=0.0)
        v = tl.load(V + k_off + kv_ptr, mask=kv_mask, other=0.0)
        if DOT_FP32:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
        for start_m in range(0, SEQ_Q, BLOCK_M):
            rows = start_m + tile
            row_ok = rows < SEQ_Q
            q, do, delta = _query_rows(Q, DO, O, q_off + rows[:, None] * sqm + offs_d[None, :],
                                       row_ok[:, None] & d_ok[None, :], DOT_FP32)
            lse = tl.load(lse_base + rows, mask=row_ok, other=0.0)
            # Scores transposed ([keys, queries]) so that dV and dK need no transposed operand.
            st = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale
            pt = tl.exp2(st - lse[None, :])
            pt = tl.where(col_ok[:, None] & row_ok[None, :], pt, 0.0)
            dv += tl.dot(pt.to(do.dtype), do, input_precision=PRECISION)
            dpt = tl.dot(v, tl.trans(do), input_precision=PRECISION)
            dst = pt * (dpt - delta[None, :])
            dk += tl.dot(dst.to(q.dtype), q, input_precision=PRECISION)
        dk = dk * sm_scale
        tl.store(DK + k_off + kv_ptr, dk.to(DK.dtype.element_ty), mask=kv_mask)
        tl.store(DV + k_off + kv_ptr, dv.to(DV.dtype.element_ty), mask=kv_mask)

    # ---- dQ for queries [pid * BLOCK_N, +BLOCK_N)
    if pid * BLOCK_N < SEQ_Q:
        offs_q = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = offs_q < SEQ_Q
        q_ptr = q_off + offs_q[:, None] * sqm + offs_d[None, :]
        q_mask = row_ok[:, None] & d_ok[None, :]
        q, do, delta = _query_rows(Q, DO, O, q_ptr, q_mask, DOT_FP32)
        lse = tl.load(lse_base + offs_q, mask=row_ok, other=0.0)
        dq = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
        for start_k in range(0, SEQ_K, BLOCK_M):
            cols = start_k + tile
            key_in, col_ok = _valid_keys(Mask, b, cols, SEQ_K, HAS_MASK)
            k = tl.load(K + k_off + cols[:, None] * skn + offs_d[None, :],
                        mask=key_in[:, None] & d_ok[None, :], other=0.0)
            vt = tl.load(V + k_off + cols[None, :] * skn + offs_d[:, None],
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
        tl.store(DQ + q_ptr, dq.to(DQ.dtype.element_ty), mask=q_mask)


# Tried once per shape on CUDA (block_m, block_n, num_warps, num_stages); the interpreter
# takes one small block so that tiny test shapes still cross tile borders. Backward: BLOCK_N is
# the block a program owns (keys for dK/dV, queries for dQ), BLOCK_M the tile it walks.
# bf16/fp16 (tensor-core dots): none of these spills at head dim 64 on sm_80/sm_90.
_FWD_CONFIGS = [LaunchConfig(128, 64, 4, 3), LaunchConfig(128, 128, 8, 3),
                LaunchConfig(64, 64, 4, 3), LaunchConfig(128, 32, 4, 4), LaunchConfig(64, 32, 4, 2)]
_BWD_CONFIGS = [LaunchConfig(32, 128, 8, 2), LaunchConfig(64, 128, 8, 2),
                LaunchConfig(32, 64, 4, 3), LaunchConfig(16, 128, 8, 2), LaunchConfig(16, 64, 4, 2)]
# fp32 inputs take IEEE dots (FMA, not tensor cores), whose tiles live in registers: the
# half-type tiles above spill kilobytes per thread there. These are the ones that compile
# without spills at head dims 64 and 128 on sm_80 and sm_90 (python -m kernels.compile_check).
_FWD_CONFIGS_FP32 = [LaunchConfig(64, 32, 8, 3), LaunchConfig(64, 32, 8, 2), LaunchConfig(32, 32, 8, 2)]
_BWD_CONFIGS_FP32 = [LaunchConfig(16, 32, 8, 2), LaunchConfig(32, 16, 8, 2), LaunchConfig(16, 16, 8, 2)]
_INTERP_CONFIGS = [LaunchConfig(_INTERP_BLOCK, _INTERP_BLOCK, 4, 1)]


# Triton decides at @triton.jit time (this module's import) whether the kernels above are
# interpreted, so that is the moment that counts (and one env lookup per launch is saved).
_INTERPRETED = interpreter_enabled()


def _configs(dtype: torch.dtype, half: list[LaunchConfig], fp32: list[LaunchConfig]) -> list[LaunchConfig]:
    if _INTERPRETED:
        return _INTERP_CONFIGS
    return fp32 if dtype == torch.float32 else half


def _precision(dtype: torch.dtype) -> str:
    # fp32 inputs get IEEE dots (true fp32), half types the tensor cores' native path.
    return "ieee" if dtype == torch.float32 else "tf32"


def _with_layout(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``x`` if it already has ``ref``'s strides, else a copy of it in ``ref``'s layout."""
    if x.stride() == ref.stride():
        return x
    return torch.empty_like(ref).copy_(x)


def _non_overlapping_and_dense(x: torch.Tensor) -> bool:
    """Whether ``x``'s strides are a permutation of a contiguous layout (then ``empty_like``
    reproduces them exactly); checked in Python, with no allocation."""
    expected = 1
    for size, stride in sorted(zip(x.shape, x.stride()), key=lambda t: t[1]):
        if size != 1:
            if stride != expected:
                return False
            expected *= size
    return True


def _dense_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` if ``empty_like`` reproduces its strides and its last dim is contiguous, else a
    contiguous copy: outputs and gradients are then allocated in the inputs' own layout, so one
    set of strides serves several tensors (fewer launch arguments)."""
    if x.stride(-1) == 1 and _non_overlapping_and_dense(x):
        return x
    return x.contiguous()


def _prepare(q, k, v, mask):
    q = _dense_rows(q)
    k = _dense_rows(k)
    v = _with_layout(v, k)
    if mask is not None and not mask.is_contiguous():
        mask = mask.contiguous()
    return q, k, v, mask


@functools.lru_cache(maxsize=None)
def _flags(dtype: torch.dtype, D: int, has_mask: bool) -> dict:
    # Cached: computing these took ~10 us of host time per launch (measured on the CPU).
    return dict(HAS_MASK=has_mask, DOT_FP32=dot_in_fp32(dtype), PRECISION=_precision(dtype),
                HEAD_DIM=D, BLOCK_D=max(16, triton.next_power_of_2(D)))


def _forward_outputs(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """o (in q's layout) and the row log-sum-exps; also the custom op's fake outputs."""
    B, H, Sq, _ = q.shape
    return torch.empty_like(q), q.new_empty((B * H, Sq), dtype=torch.float32)


def _backward_outputs(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """dq, dk, dv in the prepared inputs' layouts; also the custom op's fake outputs."""
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(k)


def _triton_forward(q, k, v, mask, sm_scale):
    """Launch the forward on prepared inputs (see ``_prepare``): returns (o, lse)."""
    B, H, Sq, _ = q.shape
    Sk = k.shape[2]
    o, lse = _forward_outputs(q)
    sq, sk = q.stride(), k.stride()
    launch_tuned(
        _attn_fwd_kernel, lambda c: (triton.cdiv(Sq, c.block_m), B * H),
        (q, k, v, q if mask is None else mask, o, lse, sq[0], sq[1], sq[2], sk[0], sk[1], sk[2],
         H, Sq, Sk, sm_scale * LOG2E),
        _flags(q.dtype, q.shape[3], mask is not None),
        ("fwd", q.device, q.dtype, Sq, Sk, q.shape[3], mask is not None),
        _configs(q.dtype, _FWD_CONFIGS, _FWD_CONFIGS_FP32))
    return o, lse


def _triton_backward(do, q, k, v, o, lse, mask, sm_scale):
    """One launch for dq, dk, dv on prepared inputs; ``do`` may have any layout."""
    B, H, Sq, _ = q.shape
    Sk = k.shape[2]
    do = _with_layout(do, o)
    dq, dk, dv = _backward_outputs(q, k)
    sq, sk = q.stride(), k.stride()
    launch_tuned(
        _attn_bwd_kernel, lambda c: (triton.cdiv(max(Sq, Sk), c.block_n), B * H),
        (q, k, v, q if mask is None else mask, o, do, lse, dq, dk, dv,
         sq[0], sq[1], sq[2], sk[0], sk[1], sk[2], H, Sq, Sk, sm_scale * LOG2E, sm_scale),
        _flags(q.dtype, q.shape[3], mask is not None),
        ("bwd", q.device, q.dtype, Sq, Sk, q.shape[3], mask is not None),
        _configs(q.dtype, _BWD_CONFIGS, _BWD_CONFIGS_FP32))
    return dq, dk, dv


class _FusedAttention(torch.autograd.Function):
    """Eager path: the least host work per call (a custom op costs ~20 us more per call)."""

    @staticmethod
    def forward(ctx, q, k, v, key_padding_mask, sm_scale):
        q, k, v, mask = _prepare(q, k, v, key_padding_mask)
        o, lse = _triton_forward(q, k, v, mask, sm_scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.key_padding_mask = mask
        ctx.sm_scale = sm_scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = _triton_backward(do, q, k, v, o, lse, ctx.key_padding_mask, ctx.sm_scale)
        return dq, dk, dv, None, None


# Compiled path: torch.compile cannot trace into the tuner and the Triton launch, so under
# compile the same launches sit behind opaque custom ops (fake impls give the output layouts;
# the graph keeps no break and CUDA graphs in mode="reduce-overhead" can capture them).
@torch.library.custom_op("mamo_kernels::attention_fwd", mutates_args=())
def _attention_fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      mask: torch.Tensor | None, sm_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    q, k, v, mask = _prepare(q, k, v, mask)
    return _triton_forward(q, k, v, mask, sm_scale)


@_attention_fwd_op.register_fake
def _(q, k, v, mask, sm_scale):
    return _forward_outputs(_dense_rows(q))


@torch.library.custom_op("mamo_kernels::attention_bwd", mutates_args=())
def _attention_bwd_op(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      o: torch.Tensor, lse: torch.Tensor, mask: torch.Tensor | None,
                      sm_scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    q, k, v, mask = _prepare(q, k, v, mask)
    return _triton_backward(do, q, k, v, o, lse, mask, sm_scale)


@_attention_bwd_op.register_fake
def _(do, q, k, v, o, lse, mask, sm_scale):
    return _backward_outputs(_dense_rows(q), _dense_rows(k))


def _attention_op_setup(ctx, inputs, output):
    q, k, v, mask, sm_scale = inputs
    ctx.save_for_backward(q, k, v, mask, output[0], output[1])
    ctx.sm_scale = sm_scale


def _attention_op_backward(ctx, do, _dlse):
    q, k, v, mask, o, lse = ctx.saved_tensors
    dq, dk, dv = _attention_bwd_op(do, q, k, v, o, lse, mask, ctx.sm_scale)
    return dq, dk, dv, None, None


_attention_fwd_op.register_autograd(_attention_op_backward, setup_context=_attention_op_setup)


# FLOPs: SDPA's formulas (torch.utils.flop_counter), so that FlopCounterMode counts the same
# model FLOPs whichever attention runs (MFU is model FLOPs over time; the fused backward's
# recomputation is not counted, as for SDPA's).
@register_flop_formula(torch.ops.mamo_kernels.attention_fwd)
def _attention_fwd_flops(q_shape, k_shape, v_shape, *args, **kwargs) -> int:
    return sdpa_flop_count(q_shape, k_shape, v_shape)


@register_flop_formula(torch.ops.mamo_kernels.attention_bwd)
def _attention_bwd_flops(do_shape, q_shape, k_shape, v_shape, *args, **kwargs) -> int:
    return sdpa_backward_flop_count(do_shape, q_shape, k_shape, v_shape)


def _dispatch_mode_active() -> bool:
    # e.g. FlopCounterMode on the trainer's first step: only the custom op is seen by it
    return torch.utils._python_dispatch._get_current_dispatch_mode() is not None


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
    if torch.compiler.is_compiling() or _dispatch_mode_active():
        return _attention_fwd_op(q, k, v, key_padding_mask, scale)[0]
    return _FusedAttention.apply(q, k, v, key_padding_mask, scale)
