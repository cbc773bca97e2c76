"""`python -m mamo.demo` (the entry-point shim of flows.demo) end to end with a small setting:
real HTTP download through the Prefect flow, concepts flow, tiny training, evaluation, report.
Then a second run must reuse every stage."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mamo.evaluation.report import SECTIONS, check_report

REPO = Path(__file__).resolve().parents[2]
SMALL = ["data.n=300", "data.eval_n=100", "train.steps=20", "eval.max_items=100", "eval.k=8"]


def _demo(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PREFECT_HOME"] = str(out / ".prefect")  # isolated from other tests' Prefect state
    return subprocess.run([sys.executable, "-m", "mamo.demo", f"out={out}", *SMALL, *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)


@pytest.mark.slow
def test_demo_end_to_end_and_idempotent(tmp_path):
    out = tmp_path / "demo"
    r = _demo(out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = out / "tiny" / "report" / "index.html"
    assert f"report: {report}" in r.stdout
    assert check_report(report) == []
    html = report.read_text()
    for s in SECTIONS:
        assert f"id='{s}'" in html
    # the download really went through img2dataset over HTTP
    import json

    manifest = json.loads((out / "data" / "synthetic" / "train" / "manifest.json").read_text())
    assert manifest["counts"]["written"] >= 290
    assert (out / "data" / "synthetic" / "train" / "concepts" / "LATEST").is_file()
    results = json.loads((out / "tiny" / "results.json").read_text())
    assert results["n_images"] == 100 and "finegrained" in results
    assert "fine-grained itm accuracy" in r.stdout

    # second run: every stage reused, nothing retrained
    mtime = (out / "tiny" / "final" / "model.safetensors").stat().st_mtime
    r2 = _demo(out)
    assert r2.returncode == 0, r2.stdout[-3000:] + r2.stderr[-3000:]
    assert r2.stdout.count("skipped") == 6, r2.stdout
    assert (out / "tiny" / "final" / "model.safetensors").stat().st_mtime == mtime

    # a changed setting redoes that stage and the ones after it, not the data stages
    r3 = _demo(out, "eval.k=4")
    assert r3.returncode == 0, r3.stdout[-3000:] + r3.stderr[-3000:]
    assert r3.stdout.count("skipped") == 5 and "settings changed" in r3.stdout
