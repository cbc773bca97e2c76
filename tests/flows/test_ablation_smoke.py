"""The ablation end to end at smoke size: 3 variants x 2 seeds x 20 steps on tiny data, every
readout, and the structure of the results data (never its numbers)."""
import json
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "train"))

from train_helpers import TINY, make_dataset  # noqa: E402


@pytest.mark.slow
def test_ablation_smoke_writes_results_data(tmp_path):
    from flows.ablation import AblationConfig, run_ablation, run_name
    from ingest.synthetic import SyntheticConfig
    from ingest.synthetic_version import write_synthetic_version
    from mamo.core.config import load_config
    from mamo.evaluation.finegrained import CHANGE_TYPES
    from mamo.run_dir import RunDir

    train = make_dataset(tmp_path / "data")
    write_synthetic_version(tmp_path / "data", "synthetic", "eval", SyntheticConfig(n=16, seed=1, image_size=64),
                            samples_per_shard=16, progress=False)
    page = tmp_path / "page.md"
    page.write_text("# x\n<!-- ablation-results:begin -->\nold\n<!-- ablation-results:end -->\ntail\n")
    common = [*TINY, "train.ckpt_every=10", "train.keep_last=2"]
    cfg = load_config(AblationConfig, str(REPO / "configs" / "ablation.yaml"), [
        f"out={tmp_path / 'abl'}", "steps=20", "seeds=[0,1]", f"common=[{','.join(common)}]",
        f"data_version={train}", f"eval_version={tmp_path / 'data' / 'synthetic' / 'eval'}",
        "device=cpu", "eval.k=4", "eval.max_items=16", "eval.fg_images=160", "eval.fg_image_size=64",
        "eval.items_per_type=12", "eval.curve_items_per_type=6", "eval.n_boot=200",
        f"eval.results_json={tmp_path / 'results' / 'ablation.json'}", f"eval.docs_page={page}"])
    out = run_ablation(cfg)

    data = json.loads((tmp_path / "results" / "ablation.json").read_text())
    assert out["results_json"] == str(tmp_path / "results" / "ablation.json")
    assert data["steps"] == 20 and data["batch_size"] == 4 and data["seeds"] == [0, 1]
    assert set(data["items_per_type"]) <= set(CHANGE_TYPES) and data["items_per_type"]
    assert all(0 < n <= 12 for n in data["items_per_type"].values())
    assert set(data["variants"]) == {"itc_itm", "itc_itm_mlm", "mamo"}
    for v, d in data["variants"].items():
        assert [r["seed"] for r in d["per_seed"]] == [0, 1]
        for r in d["per_seed"]:
            m = r["metrics"]
            assert "itm/overall" in m and "probe_fused/overall" in m and "probe_unimodal/overall" in m
            assert all(v is None or (isinstance(v, float) and 0 <= v <= 100) for k, v in m.items()
                       if not k.startswith("retrieval"))
            if v == "itc_itm":  # no text head: no masked-word number
                assert all(m[k] is None for k in m if k.startswith("masked_word/"))
            if v == "itc_itm_mlm":
                assert m["masked_word/overall"] is not None
    assert set(data["differences"]) == {"mamo-itc_itm", "mamo-itc_itm_mlm"}
    for table in data["differences"].values():
        r = table["itm/overall"]
        assert set(r) >= {"mean", "ci95"} and r["ci95"][0] <= r["mean"] <= r["ci95"][1]
        assert any("probe" in k and table[k] for k in table)
    assert all(table is None for k, table in data["differences"]["mamo-itc_itm"].items()
               if k.startswith("masked_word/"))
    # curves: the checkpoint at step 10 and the final model, both seeds
    assert data["curves"]["mamo"]["itm/overall"].keys() == {"10", "20"}
    assert len(data["curves"]["mamo"]["itm/overall"]["10"]) == 2
    for png in data["figures"].values():
        assert (tmp_path / "results" / png).stat().st_size > 1000
    text = page.read_text()
    assert "old" not in text and "| itm/overall |" in text and text.endswith("tail\n")
    assert all(math.isfinite(s) for s in data["variants"]["mamo"]["eval_seconds"])

    # run again: training and evaluation are reused (no new results), the answer is the same
    res = RunDir(tmp_path / "abl" / run_name("mamo", 0)).results
    before = res.stat().st_mtime
    run_ablation(cfg)
    assert res.stat().st_mtime == before
    again = json.loads((tmp_path / "results" / "ablation.json").read_text())
    assert again["differences"] == data["differences"]
