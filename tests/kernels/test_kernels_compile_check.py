"""The kernels compile for real GPUs (sm_80 A100, sm_90 H100/H200) with every tuner config,
ahead of time on this CPU machine (Triton's own ptxas), at the shapes a training step uses."""
import os
import subprocess
import sys
from pathlib import Path

from kernels.compile_check import Result, failures

ROOT = Path(__file__).resolve().parents[2]


def test_every_kernel_compiles_for_a100_and_h200_in_bf16():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "kernels.compile_check", "--arch", "80", "--arch", "90",
                           "--dtypes", "bfloat16"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for kernel in ("_attn_fwd_kernel", "_attn_bwd_kernel", "_ce_rows_kernel", "_masked_regression_kernel"):
        for arch in ("sm_80", "sm_90"):
            assert any(line.startswith(arch) and kernel in line and line.endswith(" ok")
                       for line in out.splitlines()), f"{kernel} not compiled for {arch}:\n{out[-3000:]}"
    assert "0 failures" in out


def test_interpreter_on_is_a_clear_error():
    proc = subprocess.run([sys.executable, "-m", "kernels.compile_check"], cwd=ROOT,
                          env={**os.environ, "TRITON_INTERPRET": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "TRITON_INTERPRET" in proc.stderr


def test_failures_need_an_error_or_no_fitting_config():
    fits = Result("k", "c", 80, "small", 1000, 0.1)
    big = Result("k", "c", 80, "big", 10**6, 0.1)
    assert failures([fits, big]) == []  # the tuner skips "big"
    only_big = failures([big])
    assert len(only_big) == 1 and "no config fits" in only_big[0]
    broken = Result("k", "c", 90, "small", None, 0.0, "CompilationError: boom")
    assert failures([fits, broken]) == ["k c sm_90 small: CompilationError: boom"]


def test_stack_bytes_count_as_spills():
    # ptxas puts spilled registers in the stack frame (cuobjdump: STACK:n, LOCAL:0).
    spilling = Result("k", "c", 90, "big", 1000, 0.1, regs=255, local=0, stack=184)
    clean = Result("k", "c", 90, "small", 1000, 0.1, regs=96, local=0, stack=0)
    assert spilling.spill_bytes == 184 and clean.spill_bytes == 0


def test_fp32_configs_are_used_for_fp32_inputs():
    import torch

    from kernels import attention as A

    fp32 = A._configs(torch.float32, A._FWD_CONFIGS, A._FWD_CONFIGS_FP32)
    half = A._configs(torch.bfloat16, A._FWD_CONFIGS, A._FWD_CONFIGS_FP32)
    if A._INTERPRETED:  # one small block for everything in the interpreter
        assert fp32 == half == A._INTERP_CONFIGS
    else:
        assert fp32 == A._FWD_CONFIGS_FP32 and half == A._FWD_CONFIGS
