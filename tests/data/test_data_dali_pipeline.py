"""DALI CPU pipeline: shapes, dtypes, value ranges; keys/captions match the shard contents."""
import io
import tarfile

import numpy as np
import pytest
import torch
import webdataset as wds
from shards_testdata import tiny_cfg
from PIL import Image

from mamo.data import build_loader

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def shard_contents(vdir):
    """key -> caption, read with the real webdataset library."""
    out = {}
    urls = sorted(str(p) for p in (vdir / "shards").glob("*.tar"))
    for sample in wds.WebDataset(urls, shardshuffle=False):
        out[sample["__key__"]] = sample["txt"].decode()
    return out


@pytest.mark.parametrize("split", ["eval", "train"])
def test_dali_cpu_batches_structure_and_contents(clean_version, split):
    vdir, truth = clean_version
    loader = build_loader(tiny_cfg(vdir), split)
    assert loader.backend == "dali" and loader.decode == "cpu"
    assert loader.vocab_id == "vtest" and loader.concept_vocab_size == 6
    contents = shard_contents(vdir)
    seen = []
    lo = torch.tensor((0 - MEAN) / STD, dtype=torch.float32).view(1, 3, 1, 1)
    hi = torch.tensor((1 - MEAN) / STD, dtype=torch.float32).view(1, 3, 1, 1)
    batches = list(loader)
    assert len(batches) == len(loader) == 5  # 20 samples / 4
    for b in batches:
        n = len(b["keys"])
        assert b["image"].shape == (n, 3, 32, 32) and b["image"].dtype == torch.float32
        assert b["image"].device.type == "cpu"
        for k in ("input_ids", "attention_mask", "concept_labels"):
            assert b[k].shape == (n, 16) and b[k].dtype == torch.int64
        assert (b["image"] >= lo - 1e-4).all() and (b["image"] <= hi + 1e-4).all()
        assert b["image"].std() > 0.3  # real pixels, not a constant
        assert (b["input_ids"][:, 0] == 101).all()
        assert ((b["input_ids"] == 0) == (b["attention_mask"] == 0)).all()
        for key, cap in zip(b["keys"], b["captions"]):
            assert contents[key] == cap
        seen += b["keys"]
    assert sorted(seen) == sorted(contents)
    if split == "eval":
        assert seen == sorted(contents)  # eval keeps manifest/tar order
    else:
        assert seen != sorted(contents)  # train is shuffled
    assert loader.stats["samples"] == 20 and loader.stats["corrupt_image"] == 0
    assert loader.epoch == 1  # a full pass advances the epoch


def test_eval_image_is_the_resized_shard_jpeg(clean_version):
    """Eval pixels equal the shard's JPEG (centre square, resized), decoded independently."""
    vdir, truth = clean_version
    b = next(iter(build_loader(tiny_cfg(vdir), "eval")))
    key = b["keys"][1]  # k00001 is 48x64: a real centre crop
    with tarfile.open(vdir / "shards" / "00000.tar") as tf:
        jpeg = tf.extractfile(f"{key}.jpg").read()
    img = Image.open(io.BytesIO(jpeg)).convert("RGB")
    w, h = img.size
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    ref = np.asarray(img.resize((32, 32), Image.Resampling.BILINEAR, box=box), dtype=np.float32)
    got = (b["image"][1].permute(1, 2, 0).numpy() * STD + MEAN) * 255
    assert np.abs(got - ref).mean() < 3.0


def test_concept_labels_follow_annotations(clean_version):
    vdir, truth = clean_version
    b = next(iter(build_loader(tiny_cfg(vdir, max_text_len=16), "eval")))
    # "sample 0 a red circle": [CLS] sample 0 a red circle [SEP]
    assert b["captions"][0] == "sample 0 a red circle"
    assert b["concept_labels"][0, :7].tolist() == [-100, -100, -100, -100, 0, 3, -100]


def test_no_concepts_gives_ignore_labels(clean_version):
    vdir, _ = clean_version
    loader = build_loader(tiny_cfg(vdir, vocab_id="none"), "eval")
    b = next(iter(loader))
    assert loader.concept_vocab_size == 0 and loader.vocab_id is None
    assert (b["concept_labels"] == -100).all()
