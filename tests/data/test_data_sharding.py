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


def test_shuffle_groups_keep_consecutive_pairs_in_one_batch():
    sizes = [10, 8, 12]  # even shards: samples (2k, 2k+1) of each shard form the units
    order = epoch_order(sizes, 3, 0, True, 8, group=2)
    assert sorted(order.tolist()) == list(range(30))  # a permutation: nothing lost or repeated
    pairs = order.reshape(-1, 2)
    assert (pairs[:, 1] == pairs[:, 0] + 1).all() and (pairs[:, 0] % 2 == 0).all()
    assert order.tolist() != list(range(30))  # and the pairs are shuffled
    plan = rank_plan(sizes, seed=3, epoch=0, rank=0, world_size=1, batch_size=4, train=True,
                     buffer_size=8, drop_last=True, group=2)
    for i in range(plan.num_batches):  # every batch holds whole pairs
        b = plan.batch(i).tolist()
        assert all(x + 1 in b for x in b if x % 2 == 0) and all(x - 1 in b for x in b if x % 2)


def test_shuffle_groups_never_cross_a_shard_end():
    # shards of 5 and 3: units [0,1] [2,3] [4] | [5,6] [7]; a unit across the end would be [4,5]
    for seed in range(20):
        order = epoch_order([5, 3], seed, 1, True, 100, group=2).tolist()
        assert sorted(order) == list(range(8))
        for first in (0, 2, 5):
            assert order[order.index(first) + 1] == first + 1
    assert epoch_order([5, 3], 0, 1, True, 100, group=1).tolist() == epoch_order([5, 3], 0, 1, True, 100).tolist()
