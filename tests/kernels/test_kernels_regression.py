"""Fused masked regression loss (Triton, interpreter mode) against the reference."""
import pytest
import torch

from kernels.regression import masked_regression_loss, masked_regression_reference


def _loss_and_grad(fn, pred, target, mask, **kw):
    pred.grad = None
    loss = fn(pred, target, mask, **kw)
    (0.5 * loss).backward()
    return loss.detach(), pred.grad.clone()


def _check(pred, target, mask, seed, atol=1e-5, rtol=1e-5, **kw):
    loss, grad = _loss_and_grad(masked_regression_loss, pred, target, mask, impl="triton", **kw)
    ref, ref_grad = _loss_and_grad(masked_regression_reference, pred, target, mask, **kw)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    torch.testing.assert_close(loss, ref, atol=atol, rtol=rtol, msg=lambda m: f"seed {seed} {kw}: {m}")
    torch.testing.assert_close(grad.float(), ref_grad.float(), atol=atol, rtol=rtol,
                               msg=lambda m: f"seed {seed} {kw}: grad {m}")
    return loss, grad


@pytest.mark.parametrize("kind", ["smooth_l1", "mse", "cosine"])
@pytest.mark.parametrize("target_norm", ["layer", "l2", "none"])
def test_matches_reference(kind, target_norm, seed):
    N, D = 37, 24  # D not a power of two; N not a multiple of the row block
    pred = torch.randn(N, D, requires_grad=True)
    target = torch.randn(N, D) * 3 + 1
    mask = torch.rand(N) < 0.4
    mask[0] = True
    loss, grad = _check(pred, target, mask, seed, kind=kind, target_norm=target_norm, beta=0.7)
    assert torch.count_nonzero(grad[~mask]) == 0


def test_all_rows_masked_and_beta_zero(seed):
    pred = torch.randn(20, 48, requires_grad=True)
    target = torch.randn(20, 48)
    mask = torch.ones(20, dtype=torch.bool)
    _check(pred, target, mask, seed, kind="smooth_l1", beta=0.0, target_norm="layer")
    _check(pred, target, mask, seed, kind="mse", target_norm="l2")


def test_no_masked_row_gives_zero(seed):
    pred = torch.randn(9, 16, requires_grad=True)
    mask = torch.zeros(9, dtype=torch.bool)
    loss, grad = _check(pred, torch.randn(9, 16), mask, seed, kind="cosine")
    assert loss.item() == 0.0 and torch.count_nonzero(grad) == 0


def test_target_gets_no_gradient_and_fp16_pred(seed):
    pred = torch.randn(15, 32).half().requires_grad_(True)
    target = torch.randn(15, 32).half().requires_grad_(True)
    mask = torch.rand(15) < 0.6
    mask[3] = True
    _, grad = _check(pred, target, mask, seed, atol=2e-3, rtol=2e-3, kind="smooth_l1")
    assert grad.dtype == torch.float16
    assert target.grad is None


def test_arguments_are_checked():
    pred = torch.randn(4, 8)
    with pytest.raises(ValueError, match="kind"):
        masked_regression_loss(pred, pred, torch.ones(4, dtype=torch.bool), kind="l1")
    with pytest.raises(ValueError, match="mask"):
        masked_regression_loss(pred, pred, torch.ones(4))


@pytest.mark.parametrize("kind,target_norm,tokens", [("smooth_l1", "layer", 297),  # implicit, fusion tokens
                                                     ("cosine", "l2", 257)])        # visual, ViT tokens
def test_cuda_model_shapes(kind, target_norm, tokens, cuda, seed):
    N = 8 * tokens
    pred = torch.randn(N, 768, device=cuda).bfloat16().requires_grad_(True)
    target = torch.randn(N, 768, device=cuda).bfloat16()
    mask = torch.rand(N, device=cuda) < 0.4
    _, grad = _check(pred, target, mask, seed, atol=2e-2, rtol=2e-2, kind=kind, target_norm=target_norm)
    assert grad.dtype == torch.bfloat16
