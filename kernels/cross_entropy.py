"""Fused linear + cross-entropy, chunked over rows so the full [N, V] logits never exist.

For each chunk of rows: logits = hidden_chunk @ weight^T + bias (a cuBLAS matmul into a
[chunk, V] buffer), then one Triton program per row computes the row's log-sum-exp and loss
and overwrites the logits with d(loss)/d(logits) = (softmax - onehot) / n_valid; the chunk's
gradients for hidden, weight and bias follow from two more matmuls and are kept.

Why gradients in the forward (Liger-style) rather than recomputing in the backward: the loss
is a scalar at the end of the graph, so the backward only scales the stored gradients by the
incoming scalar; recomputing would pay the [N, D] x [D, V] matmul a second time (4 instead of
3 matmuls of that size) for a memory saving of one [V, D] fp32 buffer. The gradients are
only computed when autograd needs them (no waste in evaluation).
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from kernels.dispatch import auto_impl, interpreter_enabled, select_impl
from kernels.tuning import launch

# Upper bound on the elements of one chunk's logits buffer: 2^26 (128 MiB in bf16), about
# 2,200 rows at V = 30,522. Measured on an H200 (N 8192, D 768, V 30522, bf16, fwd+bwd):
# 549 rows 10.3 ms / 269 MiB peak, 2048 rows 7.3 ms / 483 MiB, all 8192 rows 6.5 ms / 1.5 GiB;
# eager (full logits) 8.0 ms / 3.3 GiB. Smaller chunks starve the matmuls.
_CHUNK_ELEMENTS = 1 << 26


@triton.jit
def _ce_rows_kernel(
    Logits, stride_row, Labels, Loss, NValid,
    V, ignore_index,
    WRITE_GRAD: tl.constexpr, BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0)
    ptr = Logits + row.to(tl.int64) * stride_row
    cols0 = tl.arange(0, BLOCK_V)
    # Per-lane online max / sum; lanes that never see a column stay at -inf and are guarded.
    m_lane = tl.full([BLOCK_V], float("-inf"), tl.float32)
    s_lane = tl.zeros([BLOCK_V], tl.float32)
    for start in range(0, V, BLOCK_V):
        cols = start + cols0
        x = tl.load(ptr + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m_lane, x)
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        s_lane = s_lane * tl.exp(m_lane - m_safe) + tl.exp(x - m_safe)
        m_lane = m_new
    m = tl.max(m_lane, 0)
    s = tl.sum(s_lane * tl.exp(m_lane - m), 0)
    lse = m + tl.log(s)

    label = tl.load(Labels + row).to(tl.int32)
    valid = label != ignore_index
    target = tl.load(ptr + label, mask=valid, other=0.0).to(tl.float32)
    tl.store(Loss + row, tl.where(valid, lse - target, 0.0))

    if WRITE_GRAD:
        n_valid = tl.maximum(tl.load(NValid).to(tl.float32), 1.0)
        scale = tl.where(valid, 1.0 / n_valid, 0.0)
        for start in range(0, V, BLOCK_V):
            cols = start + cols0
            x = tl.load(ptr + cols, mask=cols < V, other=0.0).to(tl.float32)
            g = tl.exp(x - lse)
            g = tl.where(cols == label, g - 1.0, g) * scale
            tl.store(ptr + cols, g.to(Logits.dtype.element_ty), mask=cols < V)


def _row_block(V: int) -> int:
    if interpreter_enabled():
        return min(64, triton.next_power_of_2(V))
    return min(4096, triton.next_power_of_2(V))


def _chunk_rows(N: int, V: int, chunk_rows: int | None) -> int:
    if chunk_rows is not None:
        return max(1, min(N, chunk_rows))
    return max(1, min(N, _CHUNK_ELEMENTS // max(V, 1)))


def _fused_forward(hidden, weight, bias, labels, ignore_index, need_grad, chunk_rows):
    N, D = hidden.shape
    V = weight.shape[0]
    labels = labels.contiguous()
    # On-device count: no host sync; the kernel divides by max(count, 1).
    n_valid = (labels != ignore_index).sum().to(torch.float32).reshape(1)
    loss_rows = torch.empty(N, dtype=torch.float32, device=hidden.device)
    grad_h = torch.empty_like(hidden) if need_grad[0] else None
    grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_grad[1] else None
    grad_b = (torch.zeros(V, dtype=torch.float32, device=weight.device)
              if (bias is not None and need_grad[2]) else None)
    write_grad = any(need_grad)
    rows = _chunk_rows(N, V, chunk_rows)
    block_v = _row_block(V)
    num_warps = 4 if interpreter_enabled() else (8 if block_v >= 2048 else 4)
    for start in range(0, N, rows):
        end = min(N, start + rows)
        h = hidden[start:end]
        logits = torch.addmm(bias, h, weight.t()) if bias is not None else h @ weight.t()
        logits = logits.contiguous()
        launch(_ce_rows_kernel, (end - start,),
               (logits, logits.stride(0), labels[start:end], loss_rows[start:end], n_valid,
                V, ignore_index),
               dict(WRITE_GRAD=write_grad, BLOCK_V=block_v, num_warps=num_warps))
        if not write_grad:
            continue
        dlogits = logits  # overwritten in place by the kernel
        if grad_h is not None:
            torch.matmul(dlogits, weight, out=grad_h[start:end])
        if grad_w is not None:
            grad_w += (dlogits.t() @ h).float()
        if grad_b is not None:
            grad_b += dlogits.float().sum(0)
    loss = loss_rows.sum() / n_valid.clamp_min(1.0)[0]
    return loss, grad_h, grad_w, grad_b


class _FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, ignore_index, chunk_rows):
        # False for every input under no_grad / for frozen inputs: then nothing is computed.
        need = tuple(bool(x) for x in ctx.needs_input_grad[:3])
        loss, gh, gw, gb = _fused_forward(hidden, weight, bias, labels, ignore_index, need,
                                          chunk_rows)
        ctx.grads = (gh, gw, gb)
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        out = []
        for g, dt in zip(ctx.grads, ctx.dtypes):
            out.append(None if g is None else (g * grad_out).to(dt))
        ctx.grads = None
        return out[0], out[1], out[2], None, None, None


def linear_cross_entropy_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    ignore_index: int = -100,
    impl: str = "torch",
) -> torch.Tensor:
    """Materialised logits in fp32, cross-entropy, mean over non-ignored rows (0 if none)."""
    logits = hidden.float() @ weight.float().t()
    if bias is not None:
        logits = logits + bias.float()
    total = torch.nn.functional.cross_entropy(logits, labels, ignore_index=ignore_index,
                                              reduction="sum")
    return total / (labels != ignore_index).sum().clamp_min(1).to(total.dtype)


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    ignore_index: int = -100,
    impl: str = "auto",
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of ``hidden @ weight.T + bias`` against ``labels`` (fp32 scalar).

    ``hidden [N, D]``, ``weight [V, D]``, ``bias [V]`` or None, ``labels [N]`` int64; rows
    labelled ``ignore_index`` are skipped; 0 if every row is ignored. ``chunk_rows`` (Triton
    path) overrides how many rows share one logits buffer.
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden must be [N, D] and weight [V, D]; got {tuple(hidden.shape)}, "
                         f"{tuple(weight.shape)}")
    if labels.shape != (hidden.shape[0],):
        raise ValueError(f"labels must be [N={hidden.shape[0]}], got {tuple(labels.shape)}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must be [V={weight.shape[0]}], got {tuple(bias.shape)}")
    if impl == "auto" and hidden.is_cuda:  # Triton only where it measured faster (dispatch.auto_impl)
        impl = auto_impl("linear_cross_entropy", lambda name: functools.partial(
            fused_linear_cross_entropy, ignore_index=ignore_index, impl=name, chunk_rows=chunk_rows),
            (hidden, weight, bias, labels))
    if select_impl(impl, hidden, weight, bias, labels) == "torch":
        return linear_cross_entropy_reference(hidden, weight, bias, labels, ignore_index)
    # One compute dtype for the chunk matmuls: autocast's if it is on (as F.linear would),
    # else the promoted input dtype; the casts are differentiable, so grads come back in the
    # inputs' own dtypes.
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
    else:
        dtype = torch.promote_types(hidden.dtype, weight.dtype)
    hidden, weight = hidden.to(dtype), weight.to(dtype)
    bias = None if bias is None else bias.to(dtype)
    with torch.autocast(device_type=device_type, enabled=False):
        return _FusedLinearCrossEntropy.apply(hidden, weight, bias, labels, ignore_index,
                                              chunk_rows)
