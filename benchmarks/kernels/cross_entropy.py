"""Fused linear cross-entropy (``kernels.cross_entropy.fused_linear_cross_entropy``) against
eager ``F.linear`` + ``F.cross_entropy`` on fp32 logits, forward+backward, time and peak memory,
at MAMO's two vocabularies (concepts 10k, MLM 30,522).

    python -m benchmarks.kernels.cross_entropy            # full shapes, on CUDA
    python -m benchmarks.kernels.cross_entropy --sweep    # + time and memory against chunk size
    python -m benchmarks.kernels.cross_entropy --smoke    # CPU, Triton interpreter, toy shapes
"""
from __future__ import annotations

import math
import sys

from benchmarks import harness
from benchmarks.harness import Report

# name, N rows, D, V, dtype
CASES = {
    "full": [("concepts 10k", 8192, 768, 10000, "bfloat16"), ("mlm 30522", 8192, 768, 30522, "bfloat16")],
    "quick": [("concepts 10k", 2048, 768, 10000, "bfloat16"), ("mlm 30522", 2048, 768, 30522, "bfloat16")],
    "smoke": [("smoke", 16, 16, 50, "float32")],
}
SWEEP_CHUNKS = (256, 549, 1024, 2048, 4096, 8192)


def inputs(N: int, D: int, V: int, dtype: str, device: str):
    """hidden [N, D], weight [V, D], bias [V] (requiring grad) and labels with ~20 % ignored."""
    import torch

    dt = getattr(torch, dtype)
    h = torch.randn(N, D, device=device, dtype=dt, requires_grad=True)
    w = (torch.randn(V, D, device=device) / math.sqrt(D)).to(dt).requires_grad_(True)
    b = torch.zeros(V, device=device, dtype=dt, requires_grad=True)
    labels = torch.randint(0, V, (N,), device=device)
    labels[torch.rand(N, device=device) < 0.2] = -100
    return (h, w, b), labels


def run(rep: Report, size: str, device: str, deadline: float = math.inf) -> None:
    import torch
    import torch.nn.functional as F

    from kernels.cross_entropy import fused_linear_cross_entropy

    for name, N, D, V, dt in harness.until(deadline, CASES[size], rep, "linear CE"):
        params, labels = inputs(N, D, V, dt, device)
        h, w, b = params

        def eager():
            logits = F.linear(h, w, b)
            return torch.autograd.grad(F.cross_entropy(logits.float(), labels, ignore_index=-100), params)

        harness.compare(rep, "linear CE", f"{name} N{N} D{D} V{V} {dt} fwd+bwd",
                        ("triton fused", lambda: torch.autograd.grad(
                            fused_linear_cross_entropy(h, w, b, labels, impl="triton"), params)),
                        [("eager F.linear + F.cross_entropy(fp32 logits)", eager)], device, size, memory=True)
        rep.save()


def run_sweep(rep: Report, size: str, device: str) -> None:
    """Fused CE time and peak memory, the default chunk size (rows per logits buffer) against
    others, MLM vocabulary."""
    import torch

    from kernels.cross_entropy import fused_linear_cross_entropy

    _, N, D, V, dt = CASES[size][-1]
    params, labels = inputs(N, D, V, dt, device)
    h, w, b = params
    fns = [(f"chunk_rows={c or 'default'}", lambda c=c: torch.autograd.grad(
        fused_linear_cross_entropy(h, w, b, labels, impl="triton", chunk_rows=c), params))
           for c in (None, *SWEEP_CHUNKS)]
    harness.compare(rep, "linear CE chunk sweep", f"N{N} D{D} V{V} {dt} fwd+bwd", fns[0], fns[1:], device, size,
                    memory=True)


def main(argv: list[str] | None = None) -> int:
    return harness.main(__doc__, "linear cross-entropy: triton vs eager", argv, run,
                        sweep=("also sweep the chunk size", run_sweep))


if __name__ == "__main__":
    sys.exit(main())
