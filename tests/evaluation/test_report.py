"""The report page: every section present, figures written and decodable, HTML parses."""
import json

import numpy as np

from mamo.evaluation.report import (
    CaptionHit,
    RetrievalExample,
    SECTIONS,
    check_report,
    headline,
    read_metrics,
    write_report,
)


def _metrics(path, n=40):
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for step in range(n):
            row = {"step": step, "loss": 5 - step * 0.05 + rng.normal(0, 0.1), "itc": 2.0 - step * 0.02,
                   "itm": 0.69, "mmm_implicit": 1.0 / (step + 1), "lr": 1e-4}
            f.write(json.dumps(row) + "\n")
        f.write('{"step": 40, "loss"')  # a live run's half-written line is skipped


RESULTS = {
    "run": "unit", "n_images": 10, "n_texts": 9,
    "retrieval": {"k": 4, "itc": {"tr@1": 10.0, "tr@5": 50.0, "tr@10": 100.0, "ir@1": 12.0, "ir@5": 40.0,
                                  "ir@10": 100.0, "r_mean": 52.0},
                  "itm_rerank": {"tr@1": 20.0, "tr@5": 60.0, "tr@10": 100.0, "ir@1": 22.0, "ir@5": 50.0,
                                 "ir@10": 100.0, "r_mean": 58.7}},
    "finegrained": {"itm": {"color": 70.0, "count": 55.0, "overall": 60.0, "n_items": 30.0},
                    "itc": {"color": 60.0, "count": 50.0, "overall": 55.0, "n_items": 30.0}},
}


def test_full_report(tmp_path):
    _metrics(tmp_path / "metrics.jsonl")
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == 40
    img = (np.random.default_rng(1).uniform(0, 255, (32, 32, 3))).astype(np.uint8)
    ex = [RetrievalExample(f"k{i}", img, "a red circle",
                           [CaptionHit("a red circle", 0.9, True), CaptionHit("a blue <b>square", 0.5, False)])
          for i in range(3)]
    path = write_report(tmp_path / "report", RESULTS, tmp_path / "metrics.jsonl", ex, "model:\n  width: 64\n")
    assert check_report(path) == []
    text = path.read_text()
    for s in SECTIONS:
        assert f"id='{s}'" in text
    for png in ("losses.png", "finegrained.png", "examples.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000
    assert "58.7" in text and "mmm_implicit" in text


def test_report_without_inputs_still_has_sections(tmp_path):
    path = write_report(tmp_path, {}, None)
    assert check_report(path) == []
    assert check_report(tmp_path / "nope.html") != []


def test_headline():
    h = headline(RESULTS)
    assert h["retrieval itm_rerank R@mean"] == 58.7
    assert h["fine-grained itm accuracy"] == 60.0
