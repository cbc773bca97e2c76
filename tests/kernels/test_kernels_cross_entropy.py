"""Chunked fused linear cross-entropy (Triton, interpreter mode) against the reference."""
import pytest
import torch

from kernels.cross_entropy import fused_linear_cross_entropy, linear_cross_entropy_reference


def _leaves(N, D, V, dtype=torch.float32, bias=True, device="cpu"):
    h = torch.randn(N, D, device=device).to(dtype).requires_grad_(True)
    w = (torch.randn(V, D, device=device) / D**0.5).to(dtype).requires_grad_(True)
    b = torch.randn(V, device=device).to(dtype).requires_grad_(True) if bias else None
    return h, w, b


def _loss_and_grads(fn, h, w, b, labels, **kw):
    params = [t for t in (h, w, b) if t is not None]
    for t in params:
        t.grad = None
    loss = fn(h, w, b, labels, **kw)
    (3.0 * loss).backward()  # a non-unit upstream gradient
    return loss.detach(), [t.grad.clone() for t in params]


@pytest.mark.parametrize("N,D,V,bias,chunk_rows", [
    (29, 24, 103, True, 8),     # several chunks, vocab crossing 64-wide tiles
    (13, 16, 37, False, None),  # one chunk, no bias
    (5, 32, 200, True, 1),      # one row per chunk
])
def test_matches_reference(N, D, V, bias, chunk_rows, seed):
    h, w, b = _leaves(N, D, V, bias=bias)
    labels = torch.randint(0, V, (N,))
    labels[torch.rand(N) < 0.3] = -100
    labels[0] = V - 1  # the last class, in the last (partial) tile
    loss, grads = _loss_and_grads(fused_linear_cross_entropy, h, w, b, labels, impl="triton",
                                  chunk_rows=chunk_rows)
    ref, ref_grads = _loss_and_grads(linear_cross_entropy_reference, h, w, b, labels)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5, msg=lambda m: f"seed {seed}: {m}")
    for name, g, r in zip("hwb", grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4, msg=lambda m: f"seed {seed}: d{name} {m}")
    # ignored rows get no gradient
    assert torch.count_nonzero(grads[0][labels == -100]) == 0


def test_custom_ignore_index(seed):
    h, w, b = _leaves(9, 16, 21)
    labels = torch.randint(0, 20, (9,))
    labels[::2] = 20  # class 20 is ignored here
    loss, _ = _loss_and_grads(fused_linear_cross_entropy, h, w, b, labels, ignore_index=20, impl="triton")
    ref, _ = _loss_and_grads(linear_cross_entropy_reference, h, w, b, labels, ignore_index=20)
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5, msg=lambda m: f"seed {seed}: {m}")


def test_all_ignored_gives_zero_loss_and_zero_grads(seed):
    h, w, b = _leaves(7, 16, 30)
    labels = torch.full((7,), -100)
    loss, grads = _loss_and_grads(fused_linear_cross_entropy, h, w, b, labels, impl="triton", chunk_rows=3)
    ref, _ = _loss_and_grads(linear_cross_entropy_reference, h, w, b, labels)
    assert loss.item() == 0.0 and ref.item() == 0.0
    assert all(torch.count_nonzero(g) == 0 for g in grads)


def test_fp16_inputs(seed):
    h, w, b = _leaves(12, 32, 50, dtype=torch.float16)
    labels = torch.randint(0, 50, (12,))
    loss, grads = _loss_and_grads(fused_linear_cross_entropy, h, w, b, labels, impl="triton", chunk_rows=5)
    ref, ref_grads = _loss_and_grads(linear_cross_entropy_reference, h, w, b, labels)
    torch.testing.assert_close(loss, ref, atol=1e-2, rtol=1e-2, msg=lambda m: f"seed {seed}: {m}")
    for g, r in zip(grads, ref_grads):
        assert g.dtype == torch.float16
        torch.testing.assert_close(g.float(), r.float(), atol=5e-3, rtol=5e-2, msg=lambda m: f"seed {seed}: {m}")


def test_frozen_weight_and_no_grad(seed):
    h, w, b = _leaves(6, 16, 19)
    w.requires_grad_(False)
    labels = torch.randint(0, 19, (6,))
    loss = fused_linear_cross_entropy(h, w, b, labels, impl="triton")
    loss.backward()
    assert w.grad is None and h.grad is not None and b.grad is not None
    with torch.no_grad():
        value = fused_linear_cross_entropy(h, w, b, labels, impl="triton")
    torch.testing.assert_close(value, linear_cross_entropy_reference(h, w, b, labels).detach(),
                               atol=1e-5, rtol=1e-5)


def test_auto_on_cpu_is_the_reference_and_shapes_are_checked():
    h, w, b = _leaves(4, 8, 10)
    labels = torch.randint(0, 10, (4,))
    assert torch.equal(fused_linear_cross_entropy(h, w, b, labels),
                       linear_cross_entropy_reference(h, w, b, labels))
    with pytest.raises(ValueError, match="labels"):
        fused_linear_cross_entropy(h, w, b, labels[:3])


def test_mixed_dtypes_under_autocast(seed):
    # as in a model under autocast: bf16 activations, fp32 parameters
    h = torch.randn(10, 16).bfloat16().requires_grad_(True)
    w = torch.randn(23, 16, requires_grad=True)
    b = torch.randn(23, requires_grad=True)
    labels = torch.randint(0, 23, (10,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = fused_linear_cross_entropy(h, w, b, labels, impl="triton", chunk_rows=4)
    loss.backward()
    assert h.grad.dtype == torch.bfloat16 and w.grad.dtype == torch.float32
    ref = linear_cross_entropy_reference(h.detach(), w.detach().bfloat16(), b.detach().bfloat16(), labels)
    torch.testing.assert_close(loss.detach(), ref, atol=3e-2, rtol=3e-2, msg=lambda m: f"seed {seed}: {m}")


@pytest.mark.parametrize("V", [10000, 30522])  # concept vocabulary, MLM (WordPiece)
def test_cuda_model_shapes(V, cuda, seed):
    h, w, b = _leaves(2048, 768, V, dtype=torch.bfloat16, device=cuda)
    labels = torch.randint(0, V, (2048,), device=cuda)
    labels[torch.rand(2048, device=cuda) < 0.2] = -100
    loss, grads = _loss_and_grads(fused_linear_cross_entropy, h, w, b, labels, impl="triton")
    ref, ref_grads = _loss_and_grads(linear_cross_entropy_reference, h, w, b, labels)
    torch.testing.assert_close(loss, ref, atol=3e-2, rtol=3e-2, msg=lambda m: f"seed {seed}: {m}")
    for name, g, r in zip("hwb", grads, ref_grads):
        assert g.dtype == torch.bfloat16
        torch.testing.assert_close(g.float(), r.float(), atol=5e-3, rtol=5e-2,
                                   msg=lambda m: f"seed {seed}: d{name} {m}")
