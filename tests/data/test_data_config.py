"""DataConfig through mamo.core.config: bad values name their dotted key; backend selection."""
import pytest

from mamo.core.config import ConfigError, load_config
from mamo.data import DataConfig, build_loader
from mamo.data import loader as loader_mod


def test_defaults_and_overrides():
    cfg = load_config(DataConfig, overrides=["batch_size=8", "augment.crop_scale=[0.8, 1.0]", "backend=torch"])
    assert cfg.batch_size == 8 and cfg.augment.crop_scale == (0.8, 1.0) and cfg.backend == "torch"
    assert cfg.augment.hflip_prob == 0.0 and cfg.max_text_len == 40 and cfg.vocab_id == "latest"


@pytest.mark.parametrize("override,key", [
    ("augment.hflip_prob=1.5", "augment.hflip_prob"),
    ("augment.crop_scale=[0.9, 0.5]", "augment.crop_scale"),
    ("backend=tpu", "backend"),
    ("batch_size=0", "batch_size"),
    ("shuffle_bufer=3", "shuffle_bufer"),
])
def test_bad_values_name_their_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(DataConfig, overrides=[override])
    assert e.value.key == key


def test_missing_version_dir_is_a_config_error():
    with pytest.raises(ConfigError, match="data.version_dir"):
        build_loader(DataConfig(), "train")


def test_auto_falls_back_to_torch_without_dali(clean_version, monkeypatch):
    from shards_testdata import tiny_cfg

    monkeypatch.setattr(loader_mod, "dali_available", lambda: False)
    loader = build_loader(tiny_cfg(clean_version[0], backend="auto"), "eval")
    assert loader.backend == "torch"
    assert len(next(iter(loader))["keys"]) == 4
    with pytest.raises(RuntimeError, match="nvidia.dali"):
        build_loader(tiny_cfg(clean_version[0], backend="dali"), "eval")


def test_state_after_last_batch_points_at_next_epoch(clean_version):
    from shards_testdata import tiny_cfg

    loader = build_loader(tiny_cfg(clean_version[0]), "train", epoch=2)
    it = iter(loader)
    for _ in range(len(loader)):
        next(it)
    assert loader.state_dict()["epoch"] == 3 and loader.state_dict()["batch"] == 0
