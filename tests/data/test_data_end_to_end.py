"""The real stages upstream: `python -m ingest synthetic` then `python -m concepts build`, then
the loader joins images, tokens and concept labels of that vocabulary."""
import subprocess
import sys

import pytest

from mamo.data import DataConfig, build_loader


@pytest.fixture(scope="module")
def synthetic_version(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    run = dict(check=True, capture_output=True, text=True, timeout=300)
    subprocess.run([sys.executable, "-m", "ingest", "synthetic", "--out", str(root), "--dataset", "synthetic",
                    "--version", "v1", "--n", "40", "--seed", "0", "--image-size", "64"], **run)
    vdir = root / "synthetic" / "v1"
    subprocess.run([sys.executable, "-m", "concepts", "build", str(vdir)], **run)
    return vdir


def test_loader_over_ingest_and_concepts_outputs(synthetic_version):
    from concepts.store import ConceptStore
    from concepts.tokenizer import load_tokenizer
    from ingest.manifest import load_manifest

    cfg = DataConfig(version_dir=synthetic_version, image_size=32, batch_size=8, max_text_len=24,
                     num_threads=1, decode="cpu")
    loader = build_loader(cfg, "train")
    store = ConceptStore(synthetic_version)
    assert loader.vocab_id == store.vocab_id and loader.concept_vocab_size == store.num_concepts > 0
    assert loader.samples_per_epoch == load_manifest(synthetic_version)["counts"]["written"] == 40
    tok = load_tokenizer()
    labelled = 0
    for b in loader:
        assert b["image"].shape == (len(b["keys"]), 3, 32, 32)
        for row, caption in enumerate(b["captions"]):
            for pos in range(1, int(b["attention_mask"][row].sum()) - 1):
                cid = int(b["concept_labels"][row, pos])
                if cid == -100:
                    continue
                labelled += 1
                # the labelled piece belongs to a word whose concept is that id's concept
                piece = tok.id_to_token(int(b["input_ids"][row, pos])).lstrip("#")
                assert piece in store.concepts[cid] or store.concepts[cid][:3] in piece, (caption, piece)
    assert labelled > 40
    assert loader.stats["missing_annotation"] == 0 and loader.stats["samples"] == 40
