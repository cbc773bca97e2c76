"""One attention function, three implementations, one padding contract."""
from __future__ import annotations

import pytest
import torch

from mamo.model.attention import attention, attention_probs


def _qkv(b=3, h=2, s=7, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, s, d, generator=g, requires_grad=True) for _ in range(3)]


def _mask(b=3, s=7):
    m = torch.zeros(b, s, dtype=torch.bool)
    m[1, 4:] = True  # partly padded
    m[2, :] = True  # fully padded sample
    return m


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_padding_contract(impl):
    q, k, v = _qkv()
    mask = _mask()
    out = attention(q, k, v, mask, impl)
    assert torch.isfinite(out).all()
    assert torch.equal(out[2], torch.zeros_like(out[2]))  # fully padded -> exactly 0
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    # values at padded keys cannot leak into the output
    v2 = v.detach().clone()
    v2[1, :, 4:] += 100.0
    out2 = attention(q.detach(), k.detach(), v2, mask, impl)
    torch.testing.assert_close(out2[1], out[1].detach())


def test_eager_and_sdpa_agree():
    q, k, v = _qkv(seed=1)
    mask = _mask()
    torch.testing.assert_close(attention(q, k, v, mask, "eager"), attention(q, k, v, mask, "sdpa"),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attention(q, k, v, None, "eager"), attention(q, k, v, None, "sdpa"),
                               rtol=1e-5, atol=1e-5)


def test_probs_are_distributions_over_real_keys():
    q, k, _ = _qkv()
    p = attention_probs(q, k, _mask())
    torch.testing.assert_close(p[:2].sum(-1), torch.ones(2, 2, 7))
    assert torch.equal(p[1, :, :, 4:], torch.zeros(2, 7, 3))
    assert torch.equal(p[2], torch.zeros_like(p[2]))


def test_triton_kernel_matches_eager():
    # kernels/ runs in Triton's interpreter on CPU (TRITON_INTERPRET=1 from tests/conftest.py).
    pytest.importorskip("triton")
    q, k, v = _qkv(b=3, h=2, s=16, d=16, seed=2)
    mask = torch.zeros(3, 16, dtype=torch.bool)
    mask[1, 11:] = True
    mask[2, :] = True
    got = attention(q, k, v, mask, "triton")
    grads = torch.autograd.grad(got.sum(), (q, k, v))
    want = attention(q, k, v, mask, "eager")
    want_grads = torch.autograd.grad(want.sum(), (q, k, v))
    torch.testing.assert_close(got, want, rtol=2e-4, atol=2e-4)
    for a, b in zip(grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


def test_unknown_impl_and_non_bool_mask_are_errors():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="unknown attention impl"):
        attention(q, k, v, None, "flash")
    with pytest.raises(TypeError, match="bool"):
        attention(q, k, v, _mask().long(), "sdpa")


def test_triton_output_keeps_the_projection_layout():
    # The kernel writes o in q's [B, S, H, D] memory layout, so merging the heads after
    # attention is a view (no copy kernel), and the gradient arriving there needs no copy.
    pytest.importorskip("triton")
    from mamo.model.attention import MultiHeadAttention

    m = MultiHeadAttention(64, 4, impl="triton")
    x = torch.randn(2, 9, 64)
    q, k, v = m._split(m.query(x)), m._split(m.key(x)), m._split(m.value(x))
    o = attention(q, k, v, None, "triton")
    assert o.stride() == q.stride()
    merged = o.transpose(1, 2).reshape(2, 9, 64)
    assert merged.data_ptr() == o.data_ptr() and merged._base is not None
