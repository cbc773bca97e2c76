"""The report shows MFU next to samples/s (medians after the first step)."""
import json

import pytest

from mamo.evaluation.report import throughput, write_report


def test_mfu_beside_samples_per_s(tmp_path):
    rows = [{"step": 1, "loss": 3.0, "samples_per_s": 1.0, "flops": 4.5e13, "mfu": 0.01, "data_wait_share": 0.5}]
    rows += [{"step": s, "loss": 2.0, "samples_per_s": 300.0 + s, "flops": 4.5e13, "mfu": 0.2 + s / 1000,
              "data_wait_share": 0.01} for s in range(2, 7)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    speed = throughput(rows)
    assert speed == pytest.approx({"samples/s": 304.0, "MFU %": 20.4, "data wait %": 1.0, "TFLOP/step": 45.0})
    text = write_report(tmp_path / "report", {}, tmp_path / "metrics.jsonl").read_text()
    assert "MFU %" in text and "samples/s" in text and "20.4" in text


def test_cpu_rows_have_no_mfu_column(tmp_path):
    rows = [{"step": s, "loss": 1.0, "samples_per_s": 8.0, "flops": 1e9} for s in (1, 2, 3)]
    assert throughput(rows) == pytest.approx({"samples/s": 8.0, "TFLOP/step": 1e-3})
