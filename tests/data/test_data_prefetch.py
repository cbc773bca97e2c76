"""The DALI path decodes ahead in threads: stopping mid-epoch leaves no thread behind and the
same loader continues exactly (the work done ahead is dropped, not counted)."""
import threading

import torch
from shards_testdata import tiny_cfg

from mamo.data import build_loader


def _decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("mamo-read", "mamo-decode"))]


def test_stop_mid_epoch_then_continue_in_the_same_loader(clean_version):
    vdir, _ = clean_version
    cfg = tiny_cfg(vdir, backend="dali", drop_last=False, batch_size=2)  # 5 batches
    full = list(build_loader(cfg, "train", epoch=1))
    loader = build_loader(cfg, "train", epoch=1)
    it = iter(loader)
    head = [next(it)]  # batches 1 and 2 are being read/decoded ahead now
    it.close()  # the consumer stops (e.g. a signal): the threads finish and go
    assert _decode_threads() == []
    assert loader.state_dict()["batch"] == 1 and loader.stats["batches"] == 1
    tail = list(loader)  # the same loader resumes at batch 1
    assert [b["keys"] for b in head + tail] == [b["keys"] for b in full]
    for got, want in zip(head + tail, full):
        assert torch.equal(got["image"], want["image"])
    assert _decode_threads() == []
