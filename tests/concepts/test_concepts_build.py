"""Vocabulary versions and annotations on tiny dataset versions."""
import json
from collections import Counter

import pytest
from concepts_testdata import CAPTIONS, make_version, tree_bytes

from concepts.build import annotate_existing, build_concepts, coverage, list_versions
from concepts.config import ConceptsConfig, VocabConfig
from concepts.encode import encode_batch
from concepts.store import ConceptStore
from concepts.tokenizer import load_tokenizer
from concepts.vocab import build_vocab
from mamo.core.config import ConfigError, load_config

SHARDS = [CAPTIONS[:5], CAPTIONS[5:] + ["", b"\xff bad utf8", "🙂"]]


def cfg(**vocab):
    c = ConceptsConfig(show_progress=False)
    c.vocab = VocabConfig(**{"min_count": 1, **vocab})
    return c


def test_vocab_order_thresholds_and_ids():
    counts = Counter({("dog", "NOUN"): 5, ("run", "VERB"): 3, ("run", "NOUN"): 1,
                      ("cat", "NOUN"): 4, ("ant", "NOUN"): 4, ("rare", "ADJ"): 1})
    v = build_vocab(counts, VocabConfig(min_count=2, max_size=3))
    assert [(e.id, e.concept, e.pos, e.count) for e in v] == [
        (0, "dog", "NOUN", 5), (1, "ant", "NOUN", 4), (2, "cat", "NOUN", 4)]
    v = build_vocab(counts, VocabConfig(min_count=2, max_size=10))
    assert v[-1].concept == "run" and v[-1].pos == "VERB" and v[-1].count == 4


def test_build_layout_store_and_alignment(tmp_path):
    vdir = make_version(tmp_path, SHARDS)
    shard_before = tree_bytes(vdir / "shards")
    res = build_concepts(vdir, cfg())
    assert res.rebuilt and (vdir / "concepts" / "LATEST").read_text().strip() == res.vocab_id
    store = ConceptStore(vdir)
    assert store.vocab_id == res.vocab_id and store.num_concepts == res.num_concepts
    assert store.concepts[0] == "dog"  # the most frequent concept
    meta = store.meta
    assert meta["vocab_id"] == res.vocab_id and meta["params"]["vocab"]["min_count"] == 1
    assert meta["spacy_pipeline"]["name"].startswith("en_core_web_sm")
    assert len(meta["manifest_sha256"]) == 64 and meta["stats"]["skipped"] == 2
    ann0, ann1 = store.annotations("00000"), store.annotations("00001")
    assert len(ann0) == 5 and len(ann1) == 6  # one line per sample, skipped ones included
    captions = dict(zip(sorted(ann0), SHARDS[0]))
    key = sorted(ann0)[0]
    cap = captions[key]
    words = [(cap[s:e], store.concepts[c]) for s, e, c in ann0[key]]
    assert words == [("dogs", "dog"), ("running", "run"), ("snowy", "snowy"), ("field", "field")]
    # the loader path: spans -> token labels
    tok = load_tokenizer()
    out = encode_batch([cap], [ann0[key]], tok, max_len=16)
    labelled = [store.concepts[c] for c in out["concept_labels"][0].tolist() if c != -100]
    assert labelled == ["dog", "run", "snowy", "field"]
    assert tree_bytes(vdir / "shards") == shard_before  # image shards never rewritten
    cov = coverage(vdir)
    assert cov["captions"] == 11 and 0 < cov["caption_coverage"] < 1
    assert 0 < cov["word_coverage"] <= 1


def test_same_corpus_gives_byte_identical_versions(tmp_path):
    a = make_version(tmp_path / "a", SHARDS)
    b = make_version(tmp_path / "b", SHARDS)
    ra, rb = build_concepts(a, cfg()), build_concepts(b, cfg())
    assert ra.vocab_id == rb.vocab_id
    assert tree_bytes(ra.path) == tree_bytes(rb.path)
    # the same settings again: nothing is rebuilt; forced: same id, old files untouched
    again = build_concepts(a, cfg())
    assert not again.rebuilt and again.vocab_id == ra.vocab_id
    before = tree_bytes(ra.path)
    forced = build_concepts(a, cfg(), force=True)
    assert forced.rebuilt and forced.vocab_id == ra.vocab_id and tree_bytes(ra.path) == before
    # a deleted annotation file makes the version out of date; a build restores it
    (ra.path / "annotations" / "00001.jsonl").unlink()
    repaired = build_concepts(a, cfg())
    assert repaired.rebuilt and tree_bytes(ra.path) == before


def test_changed_threshold_new_version_old_intact(tmp_path):
    vdir = make_version(tmp_path, SHARDS)
    first = build_concepts(vdir, cfg(min_count=1))
    old = tree_bytes(first.path)
    second = build_concepts(vdir, cfg(min_count=2))
    assert second.vocab_id != first.vocab_id and second.num_concepts < first.num_concepts
    assert tree_bytes(first.path) == old
    assert ConceptStore(vdir).vocab_id == second.vocab_id
    assert ConceptStore(vdir, first.vocab_id).num_concepts == first.num_concepts
    assert list_versions(vdir) == sorted([first.vocab_id, second.vocab_id])
    # annotations of the new vocabulary only carry ids of concepts with count >= 2
    store = ConceptStore(vdir)
    ids = {c for spans in store.annotations("00000").values() for _, _, c in spans}
    assert all(store.counts[i] >= 2 for i in ids)
    # a lost annotation file is rewritten from the extraction cache, identically
    path = store.annotation_path("00001")
    want = path.read_bytes()
    path.unlink()
    assert annotate_existing(vdir, show_progress=False) == ["00001"]
    assert path.read_bytes() == want
    # ... and also when the extraction cache is gone too (spaCy runs again, same settings)
    import shutil
    shutil.rmtree(vdir / "concepts" / "_extracted")
    path.unlink()
    assert annotate_existing(vdir, show_progress=False) == ["00001"]
    assert path.read_bytes() == want


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="vocab.min_count"):
        load_config(ConceptsConfig, None, ["vocab.min_count=0"])
    with pytest.raises(ConfigError, match="extract.bogus"):
        load_config(ConceptsConfig, None, ["extract.bogus=1"])
    c = load_config(ConceptsConfig, None, ["extract.pos=[NOUN]", "vocab.max_size=7"])
    assert c.extract.pos == ["NOUN"] and c.vocab.max_size == 7


def test_new_data_means_new_version(tmp_path):
    from concepts.build import up_to_date

    vdir = make_version(tmp_path, SHARDS)
    first = build_concepts(vdir, cfg())
    assert up_to_date(vdir, cfg()) == first.vocab_id
    old = tree_bytes(first.path)
    # the version's data changes (a re-ingest rewrote manifest.json with another shard)
    extra = make_version(tmp_path / "extra", [["A horse eats hay in a barn"]])
    (vdir / "shards" / "00002.tar").write_bytes((extra / "shards" / "00000.tar").read_bytes())
    m = json.loads((vdir / "manifest.json").read_text())
    m["shards"].append({**json.loads((extra / "manifest.json").read_text())["shards"][0],
                        "tar": "shards/00002.tar", "index": "shards/00002.idx"})
    m["counts"] = {k: v + (1 if k in ("input", "written") else 0) for k, v in m["counts"].items()}
    (vdir / "manifest.json").write_text(json.dumps(m))
    assert up_to_date(vdir, cfg()) is None
    second = build_concepts(vdir, cfg())
    assert second.rebuilt and second.vocab_id != first.vocab_id
    assert "horse" in ConceptStore(vdir).concept_to_id
    assert tree_bytes(first.path) == old


def test_synthetic_corpus_words_become_concepts(tmp_path):
    """On the project's synthetic data every shape, colour and size word is a concept."""
    import subprocess
    import sys
    from pathlib import Path

    synthetic = pytest.importorskip("ingest.synthetic")
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "ingest", "synthetic", "--out", str(tmp_path), "--n", "120",
                    "--samples-per-shard", "60", "--image-size", "16"], cwd=root, check=True,
                   capture_output=True, timeout=300)
    vdir = tmp_path / "synthetic" / "v1"
    res = build_concepts(vdir, cfg(min_count=2))
    store = ConceptStore(vdir, res.vocab_id)
    want = set(synthetic.SHAPES) | set(synthetic.COLORS) | set(synthetic.SIZES)
    assert want <= set(store.concepts), want - set(store.concepts)
    assert coverage(vdir)["caption_coverage"] == 1.0
