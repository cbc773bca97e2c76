"""`mamo.evaluate` end to end on a real (untrained) tiny MAMO and a small synthetic version."""
import json

import pytest
import yaml

from mamo.core.config import to_dict


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_model

    from ingest.synthetic import SyntheticConfig
    from ingest.synthetic_version import write_synthetic_version
    from mamo.model import MAMO
    from mamo.trainer.config import load_run_config

    root = tmp_path_factory.mktemp("evalrun")
    write_synthetic_version(root / "data", "synthetic", "eval", SyntheticConfig(n=24, seed=1, image_size=64),
                            samples_per_shard=10, progress=False)
    version = root / "data" / "synthetic" / "eval"
    cfg = load_run_config("configs/tiny.yaml", [f"data.version_dir={version}"])
    torch.manual_seed(0)
    model = MAMO(cfg.model, cfg.loss, 7)
    run = root / "run"
    (run / "final").mkdir(parents=True)
    save_model(model, str(run / "final" / "model.safetensors"))
    (run / "final" / "meta.json").write_text(json.dumps({"num_concepts": 7}))
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
    with open(run / "metrics.jsonl", "w") as f:
        for s in range(1, 6):
            f.write(json.dumps({"step": s, "loss": 3.0 / s, "itc": 1.0, "itm": 0.7, "mmm_implicit": 0.5}) + "\n")
    return run, version


def test_evaluate_run_dir(tiny_run, capsys):
    from mamo.evaluate import main
    from mamo.evaluation.report import check_report

    run, version = tiny_run
    assert main(["--run-dir", str(run), "--k", "4", "--examples", "4"]) == 0
    res = json.loads((run / "results.json").read_text())
    assert res["n_images"] == 24 and res["data"] == str(version)
    for name in ("itc", "itm_rerank"):
        assert 0 <= res["retrieval"][name]["r_mean"] <= 100
    fg = res["finegrained"]["itm"]
    assert {"color", "shape", "size", "overall"} <= set(fg)
    assert check_report(run / "report" / "index.html") == []
    out = capsys.readouterr().out
    assert "report:" in out and "fine-grained itm accuracy" in out


def test_evaluate_checkpoint_with_data(tiny_run, tmp_path):
    from mamo.evaluation.runner import evaluate

    run, version = tiny_run
    res, report = evaluate(checkpoint=run / "final" / "model.safetensors", data=version, out_dir=tmp_path,
                           k=4, max_items=12, n_examples=2)
    assert res["n_images"] == 12
    assert report == tmp_path / "report" / "index.html" and report.is_file()
    # deterministic: the same checkpoint and data give the same numbers
    res2, _ = evaluate(checkpoint=run / "final" / "model.safetensors", data=version, out_dir=tmp_path / "b",
                       k=4, max_items=12, n_examples=2)
    assert res2["retrieval"] == res["retrieval"] and res2["finegrained"] == res["finegrained"]


def test_evaluate_finegrained_readouts_on_their_own_version(tiny_run, tmp_path, capsys):
    import numpy as np

    from mamo.evaluate import main
    from mamo.evaluation.runner import ITEMS_FILE, load_items

    run, version = tiny_run
    out = tmp_path / "fg"
    assert main(["--run-dir", str(run), "--out", str(out), "--k", "4", "--examples", "2", "--max-items", "8",
                 "--fg-data", str(version), "--items-per-type", "3", "--probe-train-share", "0.5"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["n_images"] == 8 and res["finegrained_images"] == 24  # retrieval on 8, readouts on all 24
    counts = res["finegrained_items_per_type"]
    assert counts and all(1 <= n <= 3 for n in counts.values())
    assert res["finegrained"]["itm"]["n_items"] == sum(counts.values())
    assert set(res["probe"]) == {"fused", "unimodal"}
    assert res["masked_word"] is None  # the concept head's vocabulary is not there: no number
    items = load_items(out / ITEMS_FILE)
    assert len(items["itm"]) == sum(counts.values()) and set(np.unique(items["itm"])) <= {0.0, 1.0}
    assert "probe_fused/overall" in items
    assert "probe fused (%)" in capsys.readouterr().out
    assert main(["--run-dir", str(run), "--out", str(out), "--probe-train-share", "1.5"]) == 2
