"""text_target=concept_mlm end to end: a 3-step `python -m mamo.train` on real shards with
real concept annotations logs both text terms, and `python -m mamo.evaluate` scores its
checkpoint, masked words included (concept head and MLM fallback head)."""
from __future__ import annotations

import json
import math

import pytest

from mamo.trainer.metrics import read_metrics

from train_helpers import TINY, run_cli


@pytest.mark.slow
def test_concept_mlm_run_logs_both_terms_and_its_checkpoint_evaluates(dataset, tmp_path):
    run_dir = tmp_path / "run"
    r = run_cli(["-m", "mamo.train", "--config", "configs/tiny.yaml", "--run-dir", str(run_dir), "--no-progress",
                 f"data.version_dir={dataset}", *TINY, "train.steps=3", "train.ckpt_every=3",
                 "loss.text_target=concept_mlm", "loss.lambda_t_mlm=0.5"])
    assert r.returncode == 0, r.stderr[-3000:]
    recs = read_metrics(run_dir / "metrics.jsonl")
    assert [x["step"] for x in recs] == [1, 2, 3]
    for x in recs:
        for k in ("mmm_concept", "mmm_mlm"):
            assert math.isfinite(x[k]), (x["step"], k)
        assert x["mmm_mlm"] > 5.0  # ~ln(30522): the MLM head is untrained at 3 steps
    assert "text_target: concept_mlm" in (run_dir / "config.yaml").read_text()

    out = tmp_path / "eval"
    r = run_cli(["-m", "mamo.evaluate", "--run-dir", str(run_dir), "--out", str(out), "--max-items", "16",
                 "--examples", "2", "--k", "4", "--threads", "1", "--items-per-type", "4"])
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    mw = res["masked_word"]
    assert mw is not None and mw["target"] == "concept_mlm", mw
    by_head = mw["items_by_head"]
    # the synthetic captions have swaps of words with concepts and without (or of one concept)
    assert set(by_head) == {"concept", "mlm"} and min(by_head.values()) > 0, by_head
    assert mw["overall"] is not None and 0 <= mw["overall"] <= 100
    assert "masked word (concept_mlm head" in r.stdout
