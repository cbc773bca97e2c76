"""benchmarks/gpu_node.py: the plan, the refusal without CUDA, and the CPU rehearsal running
the real `python -m mamo.train` CLI (FLOPs in every row, the report written)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, timeout=600):
    return subprocess.run([sys.executable, "benchmarks/gpu_node.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_plan_lists_four_mamo_train_runs_inside_the_budget():
    r = _run("--plan")
    assert r.returncode == 0, r.stderr
    runs = [line for line in r.stdout.splitlines() if "python -m mamo.train" in line]
    assert len(runs) == 4 and all("configs/base.yaml" in x and "train.steps=200" in x for x in runs)
    assert sum("data.decode=mixed" in x for x in runs) == 2 and sum("train.compile=true" in x for x in runs) == 2
    total = float(r.stdout.split("total ~")[1].split(" s")[0])
    assert total <= 480  # 8 minutes of GPU time, so a rerun fits in a 15-minute lease


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_without_cuda_it_refuses_with_exit_2():
    r = _run()
    assert r.returncode == 2 and "--cpu-smoke" in r.stderr


@pytest.mark.slow
def test_cpu_smoke_runs_mamo_train_and_reports(tmp_path):
    out = tmp_path / "node"
    r = _run("--cpu-smoke", "--out", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    data = json.loads(Path(f"{out}.json").read_text())
    assert [c["ok"] for c in data["checks"]] == [True, True]
    runs = data["sections"]["runs"]
    assert len(runs) == 2
    for figures in runs.values():
        assert figures["samples_per_s"] > 0 and figures["tflop_per_step"] > 0
        assert figures["mfu"] is None  # no known peak on the CPU
    assert any(row["group"] == "decode" for row in data["rows"])


def test_budget_per_part_accounts_for_the_whole_step():
    from benchmarks.model_step import part_budget

    threads = torch.get_num_threads()
    try:
        budget = part_budget("micro", 4, "cpu", text_len=16, threads=1, repeats=1)
    finally:
        torch.set_num_threads(threads)
    parts = budget["parts"]
    for part in ("teacher (no grad): vision + text + fusion", "student pass 1: unmasked vision + text",
                 "student pass 2: fusion on 3B pairs (ITM)", "student pass 3: masked vision + text (MMM)",
                 "student pass 3: fusion (MMM)", "backward (all parts)"):
        assert parts[part]["GFLOP"] > 0, part
    assert sum(v["FLOP share %"] for v in parts.values()) == pytest.approx(100, abs=0.5)
    assert sum(v["GFLOP"] for v in parts.values()) == pytest.approx(budget["GFLOP per step"], rel=0.01, abs=0.05)
    # the two unmasked/masked encoder passes run the same shapes: the same FLOPs
    assert parts["student pass 1: unmasked vision + text"]["GFLOP"] == parts["student pass 3: masked vision + text (MMM)"]["GFLOP"]


def test_a_run_past_the_budget_is_killed_keeping_its_output():
    from benchmarks import harness

    r = harness.python(["-c", "import time; print('step 1', flush=True); time.sleep(60)"], timeout=3)
    assert r.returncode == -9 and "step 1" in r.stdout and "time budget" in r.stderr
