"""Every benchmark module runs on the CPU at toy sizes (``--smoke``: Triton interpreter, micro
models, a few samples) and writes its report, so that a benchmark is not found broken only when
someone needs its figures. In this process: torch is imported once for all of them."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch

MODULES = ["kernels.attention", "kernels.cross_entropy", "kernels.regression", "itc", "model_step",
           "activation_checkpointing", "fsdp_memory", "train_throughput", "loader", "concepts",
           "model_learning", "ingest"]
# the extra options that reach the rest of a module's code
EXTRA = {"kernels.attention": ["--compiled", "--profile"], "kernels.cross_entropy": ["--sweep"]}


def test_every_benchmark_module_is_listed():
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    found = {str(p.relative_to(root).with_suffix("")).replace("/", ".") for p in root.rglob("*.py")}
    # the GPU drivers have their own CPU rehearsals (tests/test_gpu_check_smoke.py, tests/test_gpu_node_smoke.py)
    assert found - {"__init__", "kernels.__init__", "harness", "gpu_check", "gpu_node"} == set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_smoke(name, tmp_path):
    threads = torch.get_num_threads()
    module = importlib.import_module(f"benchmarks.{name}")
    try:
        rc = module.main(["--smoke", "--out", str(tmp_path / "report"), *EXTRA.get(name, [])])
    finally:
        torch.set_num_threads(threads)  # some benchmarks pin their thread count
    report = json.loads((tmp_path / "report.json").read_text())
    assert rc == 0 and report["errors"] == [], report["errors"]
    assert report["rows"], "no figure measured"
    assert all(r["base_value"] is not None for r in report["rows"]), "a figure without its baseline"
    assert (tmp_path / "report.md").read_text().startswith("# ")
