"""Distributed sharding: ranks see disjoint parts covering every sample once per epoch."""
import numpy as np
import pytest
from shards_testdata import tiny_cfg

from mamo.data import build_loader
from mamo.data.sharding import buffer_shuffle, epoch_order, rank_plan
from shards_testdata import write_version


def keys_of(loader):
    return [k for b in loader for k in b["keys"]]


@pytest.mark.parametrize("split", ["train", "eval"])
def test_two_ranks_see_every_sample_exactly_once(clean_version, split):
    vdir, truth = clean_version
    cfg = tiny_cfg(vdir, drop_last=False)
    r0 = keys_of(build_loader(cfg, split, rank=0, world_size=2, epoch=1))
    r1 = keys_of(build_loader(cfg, split, rank=1, world_size=2, epoch=1))
    assert len(r0) == len(r1) == 10
    assert sorted(r0 + r1) == sorted(truth)


def test_epochs_reorder_and_epoch_advances(clean_version):
    vdir, truth = clean_version
    loader = build_loader(tiny_cfg(vdir), "train")
    e0 = keys_of(loader)
    e1 = keys_of(loader)  # iterating again runs the next epoch
    assert loader.epoch == 2
    assert sorted(e0) == sorted(e1) == sorted(truth) and e0 != e1
    again = build_loader(tiny_cfg(vdir), "train", epoch=1)
    assert keys_of(again) == e1  # the order is a function of (seed, epoch)


def test_odd_count_train_pads_evenly_and_eval_is_exact(tmp_path):
    vdir = tmp_path / "odd"
    truth = write_version(vdir, (7, 4))  # 11 samples
    cfg = tiny_cfg(vdir, vocab_id="none", drop_last=False, batch_size=3)
    train = [build_loader(cfg, "train", rank=r, world_size=2) for r in range(2)]
    assert [t.samples_per_epoch for t in train] == [6, 6]
    keys = [keys_of(t) for t in train]
    assert set(keys[0]) | set(keys[1]) == set(truth)
    assert train[0].stats["padded"] + train[1].stats["padded"] == 1
    ev = [keys_of(build_loader(cfg, "eval", rank=r, world_size=2)) for r in range(2)]
    assert sorted(ev[0] + ev[1]) == sorted(truth)
    # drop_last (train only) drops each rank's partial batch
    dl = build_loader(tiny_cfg(vdir, vocab_id="none", drop_last=True, batch_size=4), "train", rank=0, world_size=2)
    assert len(dl) == 1 and dl.samples_per_epoch == 4 and len(keys_of(dl)) == 4


def test_buffer_shuffle_is_a_permutation_and_local():
    rng = np.random.default_rng(0)
    items = np.arange(1000)
    out = buffer_shuffle(items, 10, rng)
    assert sorted(out.tolist()) == items.tolist() and (out != items).any()
    # an item leaves the buffer no earlier than its arrival position - buffer size
    pos = np.empty(1000, int)
    pos[out] = np.arange(1000)
    assert (pos >= items - 10).all()


def test_rank_plans_are_deterministic():
    a = rank_plan([5, 7, 9], seed=1, epoch=2, rank=1, world_size=3, batch_size=2, train=True,
                  buffer_size=4, drop_last=True)
    b = rank_plan([5, 7, 9], seed=1, epoch=2, rank=1, world_size=3, batch_size=2, train=True,
                  buffer_size=4, drop_last=True)
    assert a.samples.tolist() == b.samples.tolist() and a.num_batches == 3
    assert epoch_order([5, 7, 9], 1, 2, True, 4).tolist() != epoch_order([5, 7, 9], 1, 3, True, 4).tolist()
