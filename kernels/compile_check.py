"""Compile every Triton kernel for a CUDA GPU ahead of time, on a machine without one.

The interpreter (TRITON_INTERPRET=1) checks what the kernels compute, but not that they lower
to PTX/cubin, nor that a launch config fits the GPU's shared memory. This module runs the
real wrappers on small CPU tensors at MAMO-like shapes with launches recorded instead of run
(``kernels.tuning.recording_launches``), so every argument type, specialisation and constexpr
is exactly a real call's; then it compiles each recorded launch, with each of its tuner
configs, for the target architecture (Triton ships ptxas) and reads the shared memory the
compiled kernel needs, and its registers and register spills (cuobjdump, also in the wheel).

    python -m kernels.compile_check                    # sm_90 (H100/H200), every config
    python -m kernels.compile_check --arch 80 --arch 90 --dtypes bfloat16

Exit status 1 when a kernel fails to compile, or when no tuner config of a launch fits the
GPU's shared memory (a config that does not fit is skipped by the tuner; it is listed).
Run it with TRITON_INTERPRET unset (the interpreter replaces the compiler).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch

# Max dynamic shared memory per block (opt-in), bytes, from NVIDIA's CUDA programming guide
# (compute capability table).
SHARED_LIMIT = {80: 166_912, 86: 101_376, 89: 101_376, 90: 232_448, 100: 232_448}
DTYPES = ("bfloat16", "float16", "float32")


@dataclass
class Result:
    kernel: str
    case: str
    arch: int
    config: str
    shared: int | None
    seconds: float
    error: str | None = None
    regs: int | None = None  # registers per thread (cuobjdump)
    local: int | None = None  # local memory bytes per thread
    stack: int | None = None  # stack frame bytes per thread (where ptxas puts spilled registers)

    @property
    def spill_bytes(self) -> int:
        """Per-thread bytes outside registers (stack + local): > 0 means the config spills."""
        return (self.local or 0) + (self.stack or 0)

    @property
    def fits(self) -> bool:
        return self.error is None and self.shared is not None and self.shared <= SHARED_LIMIT[self.arch]


def failures(results: list[Result]) -> list[str]:
    """Compile errors, and launches for which no tuner config fits the GPU's shared memory.

    A config that compiles but needs too much shared memory is not a failure by itself: the
    tuner skips configs that fail to launch (kernels/tuning.py) as long as another one fits.
    """
    bad = [f"{r.kernel} {r.case} sm_{r.arch} {r.config}: {r.error}" for r in results if r.error]
    groups: dict[tuple, list[Result]] = {}
    for r in results:
        groups.setdefault((r.kernel, r.case, r.arch), []).append(r)
    for (kernel, case, arch), rs in groups.items():
        if not any(r.fits for r in rs) and not any(r.error for r in rs):
            bad.append(f"{kernel} {case} sm_{arch}: no config fits in {SHARED_LIMIT[arch]} B of "
                       f"shared memory (smallest needs {min(r.shared for r in rs)} B)")
    return bad


def record(dtype: torch.dtype) -> list[tuple[str, dict[str, Any]]]:
    """The launches a training step makes for ``dtype`` inputs: (case, launch) pairs."""
    from kernels.attention import _FusedAttention
    from kernels.cross_entropy import _FusedLinearCrossEntropy
    from kernels.regression import _MaskedRegression
    from kernels.tuning import recording_launches

    out: list[tuple[str, dict[str, Any]]] = []
    g = torch.Generator().manual_seed(0)

    def rand(*shape, dt=dtype):
        return torch.randn(*shape, generator=g).to(dt).requires_grad_(True)

    def grab(case: str, fn) -> None:
        with recording_launches() as rec:
            fn()
        out.extend((case, launch) for launch in rec)

    # attention as the model calls it: [B, S, H, D] projections viewed as [B, H, S, D]
    B, H = 2, 12
    for case, S, D, masked in (("fusion 197+40 D64 mask", 237, 64, True),
                               ("vit 257 D64", 257, 64, False),
                               ("text 40 D32 mask", 40, 32, True),
                               ("fusion 197+40 D128 mask", 237, 128, True)):
        if dtype != torch.bfloat16 and case.startswith(("vit", "text")):
            continue
        q, k, v = (rand(B, S, H, D).transpose(1, 2) for _ in range(3))
        mask = torch.zeros(B, S, dtype=torch.bool)
        if masked:
            mask[:, -20:] = True

        def attn(q=q, k=k, v=v, mask=mask if masked else None, D=D):
            o = _FusedAttention.apply(q, k, v, mask, 1 / math.sqrt(D))
            o.backward(torch.ones_like(o))

        grab("attention " + case, attn)

    # concept / MLM classifier: linear + cross-entropy over a 30,522-word vocabulary
    hidden, weight = rand(64, 768), rand(30522, 768)
    labels = torch.randint(0, 30522, (64,), generator=g)
    grab("linear CE V30522", lambda: _FusedLinearCrossEntropy.apply(hidden, weight, None, labels,
                                                                   -100, None))
    # implicit (layer-normed target, smooth-L1) and visual (L2, cosine) regression targets
    pred, target = rand(300, 768), rand(300, 768)
    mask = torch.rand(300, generator=g) < 0.3
    for kind, norm in (("smooth_l1", "layer"), ("cosine", "l2"), ("mse", "none")):
        grab(f"regression {kind}/{norm}",
             lambda kind=kind, norm=norm: _MaskedRegression.apply(pred, target, mask, kind, 1.0, norm))
    return out


def resource_usage(cubin: bytes) -> tuple[int | None, int | None, int | None]:
    """(registers, local-memory bytes, stack bytes) per thread of a cubin, read with the
    cuobjdump that ships in the Triton wheel; Nones when it is not there. Spilled registers
    show up as STACK (LOCAL stays 0 for Triton's kernels)."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(tool):
        return None, None, None
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        text = subprocess.run([tool, "--dump-resource-usage", path], capture_output=True,
                              text=True, timeout=60).stdout
    regs = re.search(r"REG:(\d+)", text)
    local = re.search(r"LOCAL:(\d+)", text)
    stack = re.search(r"STACK:(\d+)", text)
    return tuple(int(m.group(1)) if m else None for m in (regs, local, stack))


def compile_launch(launch: dict[str, Any], arch: int, config: Any | None) -> tuple[int, float, Any]:
    """Compile one recorded launch for ``sm_<arch>``: (shared memory bytes, seconds, kernel)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    kernel = launch["kernel"]
    kwargs = dict(launch["kwargs"])
    if config is not None:
        kwargs.update(BLOCK_M=config.block_m, BLOCK_N=config.block_n, num_warps=config.num_warps,
                      num_stages=config.num_stages)
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    # Triton's own binder: the same type/alignment specialisation a real launch would make.
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*launch["args"], **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization,
                                                              options)
    t0 = time.perf_counter()
    compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target,
                              options=options.__dict__)
    return int(compiled.metadata.shared), time.perf_counter() - t0, compiled


def _compile_one(launch: dict[str, Any], case: str, arch: int, cfg: Any | None) -> Result:
    name = launch["kernel"].fn.__name__
    label = "fixed" if cfg is None else f"M{cfg.block_m} N{cfg.block_n} w{cfg.num_warps} s{cfg.num_stages}"
    try:
        shared, sec, compiled = compile_launch(launch, arch, cfg)
    except Exception as e:  # noqa: BLE001 - reported per launch
        return Result(name, case, arch, label, None, 0.0,
                      f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    regs, local, stack = resource_usage(compiled.asm["cubin"])
    return Result(name, case, arch, label, shared, sec, regs=regs, local=local, stack=stack)


def _line(r: Result) -> str:
    status = ("ok" if r.fits else f"ERROR {r.error}" if r.error else
              f"over the {SHARED_LIMIT[r.arch]} B limit (the tuner skips it)")
    spill = f" SPILLS {r.spill_bytes} B/thread" if r.spill_bytes else ""
    return (f"sm_{r.arch} {r.kernel:26s} {r.case:40s} {r.config:17s} "
            f"shared {r.shared if r.shared is not None else '-':>7} B  "
            f"regs {r.regs if r.regs is not None else '-':>3}{spill}  {r.seconds:4.1f} s  {status}")


def check(archs: list[int], dtypes: list[str], all_configs: bool = True,
          progress: bool = True) -> list[Result]:
    """Compile every recorded launch for every arch (every tuner config when ``all_configs``)."""
    from kernels.dispatch import interpreter_enabled

    if interpreter_enabled():
        raise RuntimeError("kernels.compile_check compiles for a GPU: run it with TRITON_INTERPRET "
                           "unset (the interpreter replaces Triton's compiler)")
    results: list[Result] = []
    for dt in dtypes:
        for case, launch in record(getattr(torch, dt)):
            configs = (launch["configs"] or [None])[: None if all_configs else 1]
            for arch in archs:
                for cfg in configs:
                    results.append(_compile_one(launch, f"{case} {dt}", arch, cfg))
                    if progress:
                        print(_line(results[-1]), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", type=int, action="append", choices=sorted(SHARED_LIMIT),
                    help="compute capability x10 (repeatable): 80 A100, 86/89 consumer Ampere/Ada, "
                         "90 H100/H200, 100 B200; default 90")
    ap.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated input dtypes")
    ap.add_argument("--first-config-only", action="store_true",
                    help="only the first tuner config of each kernel (faster)")
    args = ap.parse_args(argv)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    bad = [d for d in dtypes if d not in DTYPES]
    if bad:
        ap.error(f"unknown dtype(s) {bad}; choose from {DTYPES}")
    t0 = time.time()
    try:
        results = check(args.arch or [90], dtypes, all_configs=not args.first_config_only)
    except RuntimeError as e:
        print(f"compile_check: {e}", file=sys.stderr)
        return 2
    failed = failures(results)
    for line in failed:
        print("FAILED:", line)
    print(f"compile_check: {len(results)} compilations for sm_{'/sm_'.join(map(str, args.arch or [90]))}, "
          f"{sum(not r.fits for r in results)} configs unusable, "
          f"{sum(bool(r.spill_bytes) for r in results if r.fits)} usable configs spill registers, "
          f"{len(failed)} failures, "
          f"{time.time() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
