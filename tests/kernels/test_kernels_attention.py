"""Triton flash attention (interpreter mode on the CPU) against the PyTorch reference."""
import math

import pytest
import torch
import torch.nn.functional as F

from kernels.attention import attention_reference, fused_attention

TOL = {torch.float32: dict(atol=1e-4, rtol=1e-5), torch.float16: dict(atol=2e-3, rtol=2e-3),
       torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}


def _inputs(B, H, Sq, Sk, D, dtype, requires_grad=True, device="cpu"):
    q, k, v = (torch.randn(B, H, S, D, device=device).to(dtype) for S in (Sq, Sk, Sk))
    for t in (q, k, v):
        t.requires_grad_(requires_grad)
    return q, k, v


def _run(fn, q, k, v, mask, do, **kw):
    for t in (q, k, v):
        t.grad = None
    out = fn(q, k, v, mask, **kw)
    out.backward(do)
    return out.detach(), [t.grad.detach().clone() for t in (q, k, v)]


def _compare(q, k, v, mask, seed, **kw):
    do = torch.randn(q.shape[:3] + (v.shape[-1],), device=q.device).to(q.dtype)
    out, grads = _run(lambda *a, **k_: fused_attention(*a, impl="triton", **k_), q, k, v, mask, do, **kw)
    ref, ref_grads = _run(attention_reference, q, k, v, mask, do, **kw)
    tol = TOL[q.dtype]
    assert out.dtype == q.dtype
    torch.testing.assert_close(out.float(), ref.float(), **tol, msg=lambda m: f"seed {seed}: out {m}")
    for name, g, r in zip("qkv", grads, ref_grads):
        assert torch.isfinite(g).all(), f"seed {seed}: d{name} not finite"
        torch.testing.assert_close(g.float(), r.float(), **tol, msg=lambda m: f"seed {seed}: d{name} {m}")
    return out, grads


@pytest.mark.parametrize("B,H,Sq,Sk,D,dtype", [
    (2, 2, 37, 37, 32, torch.float32),     # odd length, several tiles of 16
    (2, 1, 28, 28, 64, torch.float32),     # text 11 + image 17
    (1, 1, 11, 17, 128, torch.float32),    # cross attention, head dim 128
    (2, 2, 37, 37, 32, torch.float16),
    (1, 2, 21, 21, 64, torch.bfloat16),    # the interpreter's dot is upcast to fp32
])
def test_matches_reference_with_random_padding(B, H, Sq, Sk, D, dtype, seed):
    q, k, v = _inputs(B, H, Sq, Sk, D, dtype)
    mask = torch.rand(B, Sk) < 0.3
    mask[:, 0] = False  # keep one key per row here; empty rows are tested below
    _compare(q, k, v, mask, seed)


def test_no_mask_and_custom_scale(seed):
    q, k, v = _inputs(1, 2, 19, 23, 32, torch.float32)
    _compare(q, k, v, None, seed, sm_scale=0.3)


def test_noncontiguous_inputs(seed):
    # [B, S, H, D] projections viewed as [B, H, S, D], as a model produces them
    B, S, H, D = 2, 20, 2, 32
    q, k, v = (torch.randn(B, S, H, D).transpose(1, 2).requires_grad_(True) for _ in range(3))
    assert not q.is_contiguous()
    mask = torch.rand(B, S) < 0.25
    mask[:, -1] = False
    _compare(q, k, v, mask, seed)


def test_fully_padded_rows_give_zeros_and_no_nan(seed):
    q, k, v = _inputs(3, 2, 18, 18, 32, torch.float32)
    mask = torch.rand(3, 18) < 0.4
    mask[0, 3] = False
    mask[1] = True      # every key of element 1 is padding
    mask[2, :] = False
    out, (dq, dk, dv) = _compare(q, k, v, mask, seed)
    assert torch.count_nonzero(out[1]) == 0
    assert torch.count_nonzero(dq[1]) == 0 and torch.count_nonzero(dk[1]) == 0
    assert torch.count_nonzero(dv[1]) == 0
    # padding keys of the other elements get no gradient either
    assert torch.count_nonzero(dk[0][:, mask[0]]) == 0 and torch.count_nonzero(dv[0][:, mask[0]]) == 0


def test_single_valid_key_copies_its_value(seed):
    q, k, v = _inputs(2, 2, 17, 33, 32, torch.float32)
    mask = torch.ones(2, 33, dtype=torch.bool)
    mask[0, 20] = False
    mask[1, 32] = False  # the last key, alone in the last tile
    out, (dq, _, _) = _compare(q, k, v, mask, seed)
    torch.testing.assert_close(out[0], v[0, :, 20:21].detach().expand(-1, 17, -1))
    torch.testing.assert_close(out[1], v[1, :, 32:33].detach().expand(-1, 17, -1))
    # softmax over one key is constant: no gradient reaches q
    assert dq.abs().max() < 1e-5


def test_reference_agrees_with_torch_sdpa(seed):
    q, k, v = _inputs(2, 2, 13, 13, 32, torch.float32, requires_grad=False)
    mask = torch.rand(2, 13) < 0.3
    mask[:, 5] = False
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=~mask[:, None, None, :])
    torch.testing.assert_close(attention_reference(q, k, v, mask), expected, atol=1e-5, rtol=1e-5)
    scale = 1 / math.sqrt(32)
    assert torch.allclose(attention_reference(q, k, v, mask, scale), expected, atol=1e-5)


def test_dispatch():
    q = torch.randn(1, 1, 4, 16)
    # auto on CPU tensors takes the reference: identical to it bit for bit
    assert torch.equal(fused_attention(q, q, q, impl="auto"), attention_reference(q, q, q))
    with pytest.raises(ValueError, match="impl"):
        fused_attention(q, q, q, impl="cuda")
    with pytest.raises(ValueError, match="bool"):
        fused_attention(q, q, q, torch.zeros(1, 4, dtype=torch.int64))


def test_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q = torch.randn(1, 1, 4, 16)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        fused_attention(q, q, q, impl="triton")


def test_mixed_layouts_and_more_queries_than_keys(seed):
    # q a slice of a fused [B, S, 3, H, D] projection (not dense), k transposed, v contiguous:
    # the launch path copies what does not fit its one-stride-set-per-group contract.
    B, Sq, Sk, H, D = 2, 33, 9, 2, 32
    q = torch.randn(B, Sq, 3, H, D)[:, :, 0].transpose(1, 2).requires_grad_(True)
    k = torch.randn(B, Sk, H, D).transpose(1, 2).requires_grad_(True)
    v = torch.randn(B, H, Sk, D).requires_grad_(True)
    mask = torch.rand(B, Sk) < 0.3
    mask[:, 0] = False
    mask = mask.t().contiguous().t()  # a non-contiguous bool mask
    assert not mask.is_contiguous()
    _compare(q, k, v, mask, seed)


def test_custom_ops_pass_opcheck(seed):
    from kernels.attention import _attention_bwd_op, _attention_fwd_op

    q, k, v = _inputs(2, 2, 19, 21, 32, torch.float32)
    mask = torch.rand(2, 21) < 0.3
    scale = 1 / math.sqrt(32)
    # schema, fake (meta) outputs vs real ones, autograd registration, AOT dispatch
    torch.library.opcheck(_attention_fwd_op, (q, k, v, mask, scale))
    o, lse = _attention_fwd_op(q.detach(), k.detach(), v.detach(), mask, scale)
    do = torch.randn_like(o).transpose(1, 2).contiguous().transpose(1, 2)  # another layout
    torch.library.opcheck(_attention_bwd_op, (do, q.detach(), k.detach(), v.detach(), o, lse,
                                              mask, scale))


def test_torch_compile_traces_without_graph_breaks(seed):
    import torch._dynamo

    torch._dynamo.reset()
    q, k, v = _inputs(2, 2, 23, 23, 32, torch.float32)
    mask = torch.rand(2, 23) < 0.3
    mask[:, 0] = False
    w = torch.randn(32)

    def loss(q, k, v, mask):
        return (fused_attention(q, k, v, mask, impl="triton") * w).sin().sum()

    explain = torch._dynamo.explain(loss)(q, k, v, mask)
    assert explain.graph_break_count == 0, explain.break_reasons
    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    got = compiled(q, k, v, mask)
    got_grads = torch.autograd.grad(got, (q, k, v))
    ref = loss(q, k, v, mask)
    ref_grads = torch.autograd.grad(ref, (q, k, v))
    torch.testing.assert_close(got, ref, **TOL[torch.float32])
    for g, r in zip(got_grads, ref_grads):
        torch.testing.assert_close(g, r, **TOL[torch.float32])


def test_dense_layout_check_agrees_with_empty_like():
    from kernels.attention import _non_overlapping_and_dense

    base = torch.randn(2, 5, 3, 8)
    cases = {
        "contiguous": base,
        "heads transposed": base.transpose(1, 2),
        "all permuted": base.permute(3, 1, 0, 2),
        "sliced (qkv chunk)": torch.randn(2, 5, 9, 8)[:, :, :3],
        "strided rows": base[:, ::2],
        "expanded": torch.randn(2, 1, 3, 8).expand(2, 5, 3, 8),
    }
    for name, x in cases.items():
        assert _non_overlapping_and_dense(x) == (torch.empty_like(x).stride() == x.stride()), name


def test_random_shapes_and_masks(seed):
    # Shapes drawn per run (replay with KERNEL_TEST_SEED): lengths from 1 up, self and cross
    # attention, any padding pattern including fully padded elements.
    g = torch.Generator().manual_seed(seed)

    def draw(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    for _ in range(3):
        B, H, Sq, Sk = draw(1, 3), draw(1, 2), draw(1, 40), draw(1, 40)
        D = (16, 32, 64)[draw(0, 2)]
        q, k, v = _inputs(B, H, Sq, Sk, D, torch.float32)
        mask = torch.rand(B, Sk, generator=g) < torch.rand(1, generator=g)
        _compare(q, k, v, mask, f"{seed} (B{B} H{H} Sq{Sq} Sk{Sk} D{D})")


def _text_padding(B, S, text, device):
    """The model's key-padding: image keys first (never padded), then ``text`` text keys of
    random valid length >= 1."""
    mask = torch.zeros(B, S, dtype=torch.bool, device=device)
    lengths = torch.randint(1, text + 1, (B,), device=device)
    mask[:, S - text:] = torch.arange(text, device=device)[None, :] >= lengths[:, None]
    return mask


@pytest.mark.parametrize("B,H,S,D,text,dtype", [
    (8, 12, 237, 64, 40, torch.bfloat16),   # fusion 197+40
    (8, 12, 297, 64, 40, torch.bfloat16),   # fusion 257+40
    (8, 12, 257, 64, 0, torch.bfloat16),    # ViT 257, no mask
    (8, 12, 40, 64, 40, torch.bfloat16),    # text 40
    (8, 4, 237, 32, 40, torch.float16),
    (8, 4, 237, 128, 40, torch.float16),
    (4, 4, 101, 64, 40, torch.float32),     # IEEE fp32 dots
])
def test_cuda_model_shapes(B, H, S, D, text, dtype, cuda, seed):
    q, k, v = _inputs(B, H, S, S, D, dtype, device=cuda)
    _compare(q, k, v, _text_padding(B, S, text, cuda) if text else None, seed)


def test_cuda_fully_padded_element(cuda, seed):
    q, k, v = _inputs(4, 4, 237, 64, torch.bfloat16, device=cuda)
    mask = _text_padding(4, 237, 40, cuda)
    mask[0] = True  # every key of element 0 is padding
    out, grads = _compare(q, k, v, mask, seed)
    assert torch.count_nonzero(out[0]) == 0 and all(torch.count_nonzero(g[0]) == 0 for g in grads)
