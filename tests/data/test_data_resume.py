"""Save the position mid-epoch, restore it in a new loader: exactly the remaining batches."""
import pytest
import torch
from shards_testdata import tiny_cfg

from mamo.data import build_loader


@pytest.mark.parametrize("backend", ["dali", "torch"])
def test_resume_mid_epoch_yields_exactly_the_rest(clean_version, backend):
    vdir, truth = clean_version
    cfg = tiny_cfg(vdir, backend=backend, drop_last=False)  # 3 batches: 4, 4, 2
    cfg.augment.hflip_prob = 0.5  # random crops and flips must repeat too
    full = list(build_loader(cfg, "train", rank=1, world_size=2, epoch=3))
    first = build_loader(cfg, "train", rank=1, world_size=2, epoch=3)
    it = iter(first)
    head = [next(it), next(it)]
    state = first.state_dict()
    assert state["epoch"] == 3 and state["batch"] == 2
    del it
    resumed = build_loader(cfg, "train", rank=1, world_size=2, epoch=0)
    resumed.load_state_dict(state)
    tail = list(resumed)
    assert len(head) + len(tail) == len(full)
    for got, want in zip(head + tail, full):
        assert got["keys"] == want["keys"]
        assert torch.equal(got["input_ids"], want["input_ids"])
        assert torch.allclose(got["image"], want["image"], atol=1e-5)
    assert resumed.epoch == 4 and resumed.stats["samples"] == 10  # stats carried over the resume


def test_state_of_other_world_size_is_refused(clean_version):
    vdir, _ = clean_version
    state = build_loader(tiny_cfg(vdir), "train", rank=0, world_size=2).state_dict()
    with pytest.raises(ValueError, match="world_size"):
        build_loader(tiny_cfg(vdir), "train", rank=0, world_size=1).load_state_dict(state)
