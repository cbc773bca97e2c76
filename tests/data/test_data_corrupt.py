"""Corrupt JPEGs (garbage, truncated) and missing captions are skipped and counted; a sample
without an annotation keeps its place with all -100 labels and is counted."""
import pytest
from shards_testdata import tiny_cfg

from mamo.data import build_loader
from shards_testdata import write_concepts, write_version


@pytest.fixture(scope="module")
def broken_version(tmp_path_factory):
    vdir = tmp_path_factory.mktemp("data") / "broken"
    truth = write_version(vdir, (6, 6), corrupt={2}, truncated={7}, no_caption={4})
    write_concepts(vdir, truth, omit={"k00009"})
    return vdir, truth


@pytest.mark.parametrize("backend", ["dali", "torch"])
def test_bad_samples_skipped_and_counted(broken_version, backend):
    vdir, truth = broken_version
    loader = build_loader(tiny_cfg(vdir, backend=backend, drop_last=False), "eval")
    batches = list(loader)
    keys = [k for b in batches for k in b["keys"]]
    assert sorted(keys) == sorted(set(truth) - {"k00002", "k00007", "k00004"})
    s = loader.stats
    assert (s["corrupt_image"], s["missing_caption"], s["missing_annotation"]) == (2, 1, 1)
    assert s["samples"] == 9 and s["samples_per_epoch"] == 12
    for b in batches:
        for i, key in enumerate(b["keys"]):
            labelled = (b["concept_labels"][i] != -100).any().item()
            assert labelled == (key != "k00009")


def test_shard_without_annotation_file_fails_at_start(tmp_path):
    from concepts.store import ConceptStoreError

    vdir = tmp_path / "v"
    truth = write_version(vdir, (3, 3))
    write_concepts(vdir, truth, omit={k for k, t in truth.items() if t["shard"] == "00001"})
    with pytest.raises(ConceptStoreError, match="00001"):
        build_loader(tiny_cfg(vdir), "train")
