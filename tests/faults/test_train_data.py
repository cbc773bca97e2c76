"""The loader on damaged shards, in-process: checked against the manifest when it is built,
and a shard that becomes unreadable afterwards (a disk failing mid-run) costs only its samples."""
from __future__ import annotations

import pytest

from fault_helpers import truncate
from mamo.data import DataConfig, build_loader
from mamo.data.index import CorruptShard
from mamo.data.dali_pipeline import dali_available


def cfg(version, **kw) -> DataConfig:
    return DataConfig(version_dir=version, image_size=32, batch_size=4, max_text_len=24, num_workers=0,
                      num_threads=1, shuffle_buffer=64, **kw)


@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_a_shard_unreadable_after_the_start_skips_and_counts_its_samples(dataset_copy, backend):
    if backend == "dali" and not dali_available():
        pytest.skip("nvidia.dali is not importable here")
    loader = build_loader(cfg(dataset_copy, backend=backend), "train")
    total = loader.samples_per_epoch
    truncate(dataset_copy / "shards" / "00001.tar", 0.3)  # after the start checks passed
    batches = list(loader)
    st = loader.stats
    assert batches and st["read_error"] > 0
    assert st["samples"] + st["read_error"] + st["corrupt_image"] == total
    assert st["samples"] >= 16  # the intact shard's samples all arrived


def test_size_mismatch_is_refused_or_left_out(dataset_copy):
    truncate(dataset_copy / "shards" / "00000.tar", 0.8)
    with pytest.raises(CorruptShard, match="00000.tar is corrupt: .* the manifest says"):
        build_loader(cfg(dataset_copy, backend="torch"), "train")
    loader = build_loader(cfg(dataset_copy, backend="torch", on_corrupt="skip"), "train")
    assert [x["tar"] for x in loader.index.left_out] == ["shards/00000.tar"]
    assert len(loader.index) == 16 and loader.index.shard_stems == ["00001"]
    assert sum(len(b["keys"]) for b in loader) == loader.stats["samples"] > 0
