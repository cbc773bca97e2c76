"""Fused masked regression loss (``kernels.regression.masked_regression_loss``) against its
eager reference, forward+backward, time and peak memory, at the model's two uses: implicit
(fusion 257+40 tokens, smooth-L1 on layer-normed targets) and visual (ViT 257, cosine on
L2-normed targets).

    python -m benchmarks.kernels.regression           # full shapes, on CUDA
    python -m benchmarks.kernels.regression --smoke   # CPU, Triton interpreter, toy shapes
"""
from __future__ import annotations

import math
import sys

from benchmarks import harness
from benchmarks.harness import Report

# name, N rows, D, kind, target_norm, dtype (N: batch 128 or 32 x tokens)
CASES = {
    "full": [("implicit smooth_l1/layer", 128 * 297, 768, "smooth_l1", "layer", "bfloat16"),
             ("visual cosine/l2", 128 * 257, 768, "cosine", "l2", "bfloat16")],
    "quick": [("implicit smooth_l1/layer", 32 * 297, 768, "smooth_l1", "layer", "bfloat16"),
              ("visual cosine/l2", 32 * 257, 768, "cosine", "l2", "bfloat16")],
    "smoke": [("smoke", 20, 16, "smooth_l1", "layer", "float32")],
}


def run(rep: Report, size: str, device: str, deadline: float = math.inf) -> None:
    import torch

    from kernels.regression import masked_regression_loss, masked_regression_reference

    for name, N, D, kind, norm, dt in harness.until(deadline, CASES[size], rep, "masked regression"):
        dtype = getattr(torch, dt)
        pred = torch.randn(N, D, device=device, dtype=dtype, requires_grad=True)
        target = torch.randn(N, D, device=device, dtype=dtype)
        mask = torch.rand(N, device=device) < 0.4
        harness.compare(rep, "masked regression", f"{name} N{N} D{D} {dt} fwd+bwd",
                        ("triton fused", lambda: torch.autograd.grad(masked_regression_loss(
                            pred, target, mask, kind, 1.0, norm, impl="triton"), pred)),
                        [("eager reference", lambda: torch.autograd.grad(masked_regression_reference(
                            pred, target, mask, kind, 1.0, norm), pred))], device, size, memory=True)
        rep.save()


def main(argv: list[str] | None = None) -> int:
    return harness.main(__doc__, "masked regression: triton vs eager", argv, run)


if __name__ == "__main__":
    sys.exit(main())
