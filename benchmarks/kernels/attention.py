"""Triton flash attention (``kernels.attention.fused_attention``) against PyTorch SDPA and the
eager reference, at the shapes MAMO runs, forward and forward+backward.

    python -m benchmarks.kernels.attention                       # full shapes, on CUDA
    python -m benchmarks.kernels.attention --compiled --profile  # + torch.compile, host time
    python -m benchmarks.kernels.attention --smoke               # CPU, Triton interpreter, toy shapes

Baselines: SDPA with the flash backend and no mask (CUDA only: the fastest PyTorch has, though
it ignores padding), SDPA with the key-padding mask (what the model's ``sdpa`` path runs), and
the eager fp32 reference. ``--compiled``: fwd+bwd under ``torch.compile`` (CUDA graphs,
``reduce-overhead``), Triton's custom ops vs compiled SDPA. ``--profile``: host time per call
(issue vs wall), where it goes (torch.profiler) and the launch cost of empty Triton kernels.
TFLOP/s counts dense attention FLOPs (4·B·H·S²·D forward, ×3.5 forward+backward).
"""
from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

from benchmarks import harness
from benchmarks.harness import Report

# name, B, H, S (= Sq = Sk), D, text tokens at the end of the sequence (padded), dtype
CASES = {
    "full": [("fusion 197+40", 64, 12, 237, 64, 40, "bfloat16"), ("fusion 257+40", 128, 12, 297, 64, 40, "bfloat16"),
             ("vit 257", 128, 12, 257, 64, 0, "bfloat16"), ("text 40", 128, 12, 40, 64, 40, "bfloat16")],
    "quick": [("fusion 197+40", 16, 12, 237, 64, 40, "bfloat16"), ("fusion 257+40", 32, 12, 297, 64, 40, "bfloat16"),
              ("vit 257", 32, 12, 257, 64, 0, "bfloat16"), ("text 40", 32, 12, 40, 64, 40, "bfloat16")],
    "smoke": [("smoke", 1, 2, 37, 32, 11, "float32")],
}
# torch.compile options per size; the interpreter run only checks the code path (aot_eager)
COMPILE = {"full": {"mode": "reduce-overhead"}, "quick": {"mode": "reduce-overhead"},
           "smoke": {"backend": "aot_eager"}}
# host-time profile: (B, S, text) shapes (text alone, the largest fusion), heads, head dim, dtype,
# calls per figure; the last shape also measures the launch overhead
PROFILE = {"full": (((128, 40, 40), (128, 297, 40)), 12, 64, "bfloat16", 20),
           "quick": (((32, 40, 40), (32, 297, 40)), 12, 64, "bfloat16", 20),
           "smoke": (((1, 20, 5),), 2, 16, "float32", 1)}
# launch overhead: (B, H, S = text, D, dtype) and calls per figure for the launched calls; our
# wrappers without launches are cheap anywhere, so always at the model's text shape, 300 calls
LAUNCH = {"full": ((4, 12, 40, 64, "bfloat16"), 300), "quick": ((4, 12, 40, 64, "bfloat16"), 300),
          "smoke": ((1, 2, 20, 16, "float32"), 2)}
WRAPPERS = (4, 12, 40, 64, "bfloat16")


def padding_mask(B: int, S: int, text: int, device: Any):
    """Image keys first (never padded), then ``text`` text keys of random valid length >= 1."""
    import torch

    mask = torch.zeros(B, S, dtype=torch.bool, device=device)
    if text:
        lengths = torch.randint(1, text + 1, (B,), device=device)
        mask[:, S - text:] = torch.arange(text, device=device)[None, :] >= lengths[:, None]
    return mask


def inputs(B: int, H: int, S: int, D: int, T: int, dtype: str, device: Any):
    """q, k, v ([B, H, S, D], requiring grad), dO, and the key-padding mask (None when T = 0)."""
    import torch

    q, k, v = (torch.randn(B, H, S, D, device=device, dtype=getattr(torch, dtype), requires_grad=True)
               for _ in range(3))
    return q, k, v, torch.randn_like(q), (padding_mask(B, S, T, device) if T else None)


def _keep(mask):
    """SDPA's boolean mask (True = attend) from a key-padding mask (True = padding)."""
    return None if mask is None else ~mask[:, None, None, :]


def run(rep: Report, size: str, device: str, deadline: float = math.inf) -> None:
    """fwd and fwd+bwd of each case: Triton against every baseline."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from kernels.attention import attention_reference, fused_attention

    for name, B, H, S, D, T, dt in harness.until(deadline, CASES[size], rep, "attention"):
        q, k, v, do, mask = inputs(B, H, S, D, T, dt, device)
        keep = _keep(mask)

        def sdpa_flash():
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v)

        fns = {"triton": lambda: fused_attention(q, k, v, mask, impl="triton"),
               "sdpa flash (no mask)": sdpa_flash,
               "sdpa + mask": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=keep),
               "eager reference": lambda: attention_reference(q, k, v, mask)}
        if mask is None:
            del fns["sdpa + mask"]
        if device != "cuda":
            del fns["sdpa flash (no mask)"]  # flash kernels are CUDA-only
        for pass_name, mult in (("fwd", 1.0), ("fwd+bwd", 3.5)):
            def timed(f, pass_name=pass_name):
                if pass_name == "fwd":
                    return lambda: _no_grad(f)
                return lambda: torch.autograd.grad(f(), (q, k, v), do)

            cands = [(n, timed(f)) for n, f in fns.items()]
            harness.compare(rep, "attention", f"{name} B{B} H{H} S{S} D{D} {dt} {pass_name}", cands[0], cands[1:],
                            device, size, flops=4.0 * B * H * S * S * D * mult)
        rep.save()


def _no_grad(f):
    import torch

    with torch.no_grad():
        return f()


def run_compiled(rep: Report, size: str, device: str, deadline: float = math.inf) -> None:
    """fwd+bwd under torch.compile: Triton (custom ops) vs SDPA. ``reduce-overhead`` captures
    CUDA graphs, which removes the per-launch host cost that makes eager Triton lose at small shapes."""
    import torch
    import torch._dynamo
    import torch.nn.functional as F

    from kernels.attention import fused_attention

    opts = COMPILE[size]
    for name, B, H, S, D, T, dt in harness.until(deadline, CASES[size], rep, "attention compiled"):
        q, k, v, do, mask = inputs(B, H, S, D, T, dt, device)
        keep = _keep(mask)
        torch._dynamo.reset()
        tri = torch.compile(lambda q, k, v, m: fused_attention(q, k, v, m, impl="triton"), fullgraph=True, **opts)
        sdpa = torch.compile(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
                             fullgraph=True, **opts)
        t0 = time.time()
        out = tri(q, k, v, mask)
        compile_s = time.time() - t0
        err = harness.rel_err(out, fused_attention(q, k, v, mask, impl="triton"))
        harness.compare(rep, "attention compiled", f"{name} B{B} H{H} S{S} D{D} {dt} fwd+bwd {opts}",
                        ("triton compiled", lambda: torch.autograd.grad(tri(q, k, v, mask), (q, k, v), do)),
                        [(f"sdpa{' + mask' if T else ''} compiled",
                          lambda: torch.autograd.grad(sdpa(q, k, v, keep), (q, k, v), do))],
                        device, size, flops=4.0 * B * H * S * S * D * 3.5, compile_s=round(compile_s, 1),
                        err_vs_eager=err)
        rep.save()
    torch._dynamo.reset()


def run_profile(rep: Report, size: str, device: str) -> None:
    """Host time of one fwd+bwd, Triton vs the model's SDPA path, with torch.profiler's table,
    and the host cost per launch (empty kernels, our wrappers without their launches)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from kernels.attention import fused_attention
    from mamo.model.attention import attention

    shapes, H, D, dt, n = PROFILE[size]
    for B, S, T in shapes:
        q, k, v, do, _ = inputs(B, H, S, D, 0, dt, device)
        mask = padding_mask(B, S, T, device)
        tri = lambda: torch.autograd.grad(fused_attention(q, k, v, mask, impl="triton"), (q, k, v), do)  # noqa: E731
        sdpa = lambda: torch.autograd.grad(attention(q, k, v, mask, "sdpa"), (q, k, v), do)  # noqa: E731
        issue, wall = harness.host_time_ms(tri, device, n, min(n, 3))
        base_issue, base_wall = harness.host_time_ms(sdpa, device, n, min(n, 3))
        case = f"B{B} H{H} S{S} D{D} {dt} fwd+bwd"
        rep.row("attention host time", case, "triton (issue)", issue, "sdpa model path (issue)", base_issue,
                wall_ms=wall, base_wall_ms=base_wall)
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        with profile(activities=acts) as prof:
            for _ in range(min(n, 5)):
                tri()
            harness.sync(device)
        print(prof.key_averages().table(sort_by=f"self_{'cuda' if device == 'cuda' else 'cpu'}_time_total",
                                        row_limit=14))
    rep.section("attention launch overhead (host us per call)", launch_overhead(size, device))


def launch_overhead(size: str, device: str) -> dict[str, float]:
    """Host microseconds per call: empty Triton kernels with 1 and 17 arguments (CUDA), our
    wrappers without their launches, a Triton fwd+bwd and SDPA's: Triton's share and ours."""
    import torch
    import triton

    from kernels.attention import fused_attention
    from kernels.tuning import recording_launches
    from mamo.model.attention import attention

    @triton.jit
    def empty1(X):
        pass

    @triton.jit
    def empty17(X, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16):
        pass

    def per_call(fn, n: int) -> float:
        return round(harness.host_time_ms(fn, device, n, min(n, 10))[0] * 1e3, 2)

    def fwd_bwd(B, H, S, D, dt):
        q, k, v, do, _ = inputs(B, H, S, D, 0, dt, device)
        mask = padding_mask(B, S, S, device)
        return (lambda: torch.autograd.grad(fused_attention(q, k, v, mask, impl="triton"), (q, k, v), do),
                lambda: torch.autograd.grad(attention(q, k, v, mask, "sdpa"), (q, k, v), do))

    out = {}
    shape, n = LAUNCH[size]
    if device == "cuda":
        x = torch.zeros(16, device=device)
        out["empty kernel, 1 arg"] = per_call(lambda: empty1[(1,)](x), n)
        out["empty kernel, 17 args"] = per_call(lambda: empty17[(1,)](x, *range(1, 17)), n)
    tri, _ = fwd_bwd(*WRAPPERS)

    def wrappers_only():
        with recording_launches():
            return tri()

    label = "attention fwd+bwd B{} H{} S{} D{} {}, {}".format
    out[label(*WRAPPERS, "wrappers without launches")] = per_call(wrappers_only, 300)
    tri, sdpa = fwd_bwd(*shape)
    out[label(*shape, "triton (2 launches)")] = per_call(tri, n)
    out[label(*shape, "sdpa (model path)")] = per_call(sdpa, n)
    print("  launch overhead (host us per call):", json.dumps(out))
    return out


def main(argv: list[str] | None = None) -> int:
    return harness.main(__doc__, "attention: triton vs sdpa / eager", argv, run,
                        compiled=("also time fwd+bwd under torch.compile", run_compiled),
                        profile=("also measure host time per call", run_profile))


if __name__ == "__main__":
    sys.exit(main())
