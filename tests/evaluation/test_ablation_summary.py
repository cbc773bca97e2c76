"""The ablation's aggregation over seeds (mean, sample std, range) and its table/figure."""
import numpy as np
import pytest

from flows.ablation import AblationConfig
from mamo.core.config import ConfigError, load_config
from mamo.evaluation.ablation import format_table, plot_summary, summarize


def _res(fg, r):
    return {"finegrained": {"itm": {"overall": fg, "color": fg}, "itc": {"overall": fg - 1}},
            "retrieval": {"itm_rerank": {"r_mean": r, "tr@1": r, "ir@1": r}, "itc": {"r_mean": r}}}


def test_summarize_mean_std_range(tmp_path):
    s = summarize({"a": [_res(80, 50), _res(82, 52), _res(84, 54)], "b": [_res(90, 60)]})
    fg = s["a"]["FG ITM overall"]
    assert fg["mean"] == pytest.approx(82.0) and fg["std"] == pytest.approx(2.0)  # sample std
    assert (fg["min"], fg["max"], fg["n"]) == (80.0, 84.0, 3.0)
    assert s["b"]["FG ITM overall"]["std"] == 0.0  # one seed: no spread
    assert "FG ITM count" not in s["a"]  # absent metrics are left out, not zero
    text = format_table(s)
    assert "82.0 ± 2.0 [80-84]" in text
    md = format_table(s, markdown=True)
    assert md.splitlines()[0].startswith("| metric (%) | a | b |")
    plot_summary(s, tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 1000


def test_config_checks():
    cfg = load_config(AblationConfig, "configs/ablation.yaml", [])
    assert set(cfg.variants) == {"itc_itm", "itc_itm_mlm", "mamo"} and len(cfg.seeds) >= 3
    with pytest.raises(ConfigError, match="seeds"):
        load_config(AblationConfig, "configs/ablation.yaml", ["seeds=[1,1]"])
    with pytest.raises(ConfigError, match="eval_version"):
        load_config(AblationConfig, "configs/ablation.yaml", ["data_version=x"])


def _items(itm, change, probe, mw=None):
    import numpy as np

    d = {"change": np.array(change), "itm": np.array(itm, float), "probe_fused/overall": np.array(probe, float)}
    if mw is not None:
        d["masked_word"] = np.array(mw, float)
    return d


def _flat(itm, probe, mw, r):
    return {"itm/overall": itm, "itm/color": itm, "probe_fused/overall": probe, "masked_word/overall": mw,
            "retrieval_itm/r_mean": r}


def test_differences_pair_items_and_seeds_and_never_invent_a_missing_readout():
    from mamo.evaluation.ablation import differences

    ch = ["color", "color", "count", "count"]
    items = {"mamo": [_items([1, 1, 1, 0], ch, [1, 1], [1, 0, 1, 1]), _items([1, 1, 0, 0], ch, [1, 0], [1, 1, 1, 1])],
             "base": [_items([0, 1, 1, 0], ch, [0, 1]), _items([0, 1, 0, 0], ch, [0, 0])],
             "mlm": [_items([1, 1, 1, 0], ch, [1, 1], [0, 0, 1, np.nan]),
                     _items([1, 1, 0, 0], ch, [1, 0], [0, 1, 1, np.nan])]}
    per_seed = {"mamo": [_flat(75.0, 100.0, 75.0, 40.0), _flat(50.0, 50.0, 100.0, 42.0)],
                "base": [_flat(50.0, 50.0, None, 30.0), _flat(25.0, 0.0, None, 32.0)],
                "mlm": [_flat(75.0, 100.0, 33.3, 40.0), _flat(50.0, 50.0, 66.7, 42.0)]}
    d = differences(per_seed, items, "mamo", n_boot=300)
    assert set(d) == {"mamo-base", "mamo-mlm"}
    assert d["mamo-base"]["itm/overall"]["mean"] == pytest.approx(25.0)  # one more item right per seed
    lo, hi = d["mamo-base"]["itm/overall"]["ci95"]
    assert lo < 25.0 < hi  # one item of four carries the gap: resampling items widens it
    assert d["mamo-base"]["itm/color"]["mean"] == pytest.approx(50.0)  # the color items only
    assert d["mamo-base"]["probe_fused/overall"]["mean"] == pytest.approx(50.0)
    assert d["mamo-base"]["masked_word/overall"] is None  # base has no text head
    # masked words: the item mlm could not score is left out for both
    assert d["mamo-mlm"]["masked_word/overall"]["n_items"] == 3
    assert d["mamo-mlm"]["masked_word/overall"]["mean"] == pytest.approx(100 * (2 / 3 - 1 / 3 + 1 - 2 / 3) / 2)
    # retrieval: one number per run, resampled over seeds only (a constant 10-point gap)
    assert d["mamo-base"]["retrieval_itm/r_mean"]["mean"] == pytest.approx(10.0)
    assert d["mamo-base"]["retrieval_itm/r_mean"]["ci95"] == pytest.approx([10.0, 10.0])
    assert differences(per_seed, items, "absent") == {}


def test_flat_metrics_and_the_docs_block(tmp_path):
    from mamo.evaluation.ablation import flat_metrics, refresh_docs_block, results_markdown

    res = {"finegrained": {"itm": {"color": 90.0, "overall": 80.0, "n_items": 10.0}, "itc": {"overall": 70.0}},
           "probe": {"fused": {"color": 60.0, "overall": None}, "unimodal": {"overall": 55.0}},
           "masked_word": None, "retrieval": {"itm_rerank": {"r_mean": 30.0}, "itc": {"r_mean": 20.0}}}
    m = flat_metrics(res)
    assert m["itm/color"] == 90.0 and m["itc/color"] is None and m["probe_fused/overall"] is None
    assert m["masked_word/overall"] is None and m["retrieval_itm/r_mean"] == 30.0
    assert "itm/n_items" not in m
    data = {"steps": 20, "batch_size": 4, "seeds": [0, 1], "items_per_type": {"color": 5},
            "variants": {"a": {"summary": {"itm/color": {"mean": 90.0, "std": 1.0, "n": 2}, "masked_word/color": None}}},
            "differences": {"a-b": {"itm/color": {"mean": 2.0, "ci95": [-1.0, 5.0]}, "masked_word/color": None}}}
    md = results_markdown(data, {"curves": "x.png"})
    assert "| itm/color | 90.0 ± 1.0 | +2.0 [-1.0, +5.0] |" in md and "| masked_word/color | n/a | n/a |" in md
    assert "![curves](x.png)" in md
    page = tmp_path / "p.md"
    page.write_text("a\n<!-- ablation-results:begin -->\nold\n<!-- ablation-results:end -->\nb\n")
    assert refresh_docs_block(page, md)
    assert page.read_text().startswith("a\n<!-- ablation-results:begin -->\n") and "old" not in page.read_text()
    assert refresh_docs_block(page, "new") and page.read_text().count("ablation-results:begin") == 1
    (tmp_path / "q.md").write_text("no markers")
    assert not refresh_docs_block(tmp_path / "q.md", md)
