"""The ablation's aggregation over seeds (mean, sample std, range) and its table/figure."""
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
