"""benchmarks/gpu_check.py, the script a GPU lease runs once: its plan, its refusal without
CUDA, and a CPU smoke run of the sections cheap enough for CI (the kernel benchmarks run in
tests/test_benchmarks_smoke.py, the kernels' CUDA tests are tests/kernels' test_cuda_*), so that
a lease is not lost to a broken script."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_plan_and_no_cuda_refusal(tmp_path):
    r = _run("--plan")
    assert r.returncode == 0 and "fsdp" in r.stdout and "train_cli" in r.stdout
    assert "pytest tests/kernels -k test_cuda_" in r.stdout  # the correctness checks are the tests'
    r = _run("--out", str(tmp_path / "g"), "--sections", "attention")
    assert r.returncode == 2 and "CUDA is not available" in r.stdout
    r = _run("--cpu-smoke", "--sections", "nonsense", "--out", str(tmp_path / "g"))
    assert r.returncode == 2 and "unknown section" in r.stdout


@pytest.mark.slow
def test_cpu_smoke_of_losses_fsdp_and_train_cli(tmp_path):
    out = tmp_path / "smoke"
    r = _run("--cpu-smoke", "--sections", "cross_entropy,regression,fsdp,train_cli", "--out", str(out))
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    report = json.loads(Path(f"{out}.json").read_text())
    assert report["errors"] == []
    kinds = {c["kernel"] for c in report["checks"]}
    assert {"fsdp", "fsdp optimizer state", "mamo.train"} <= kinds
    assert all(c["ok"] for c in report["checks"])
    assert Path(f"{out}.md").is_file()
