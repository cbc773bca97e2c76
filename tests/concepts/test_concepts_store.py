"""ConceptStore over hand-written files in the documented layout."""
import json

import pytest

from concepts.store import ConceptStore, ConceptStoreError


def write_vocab(version_dir, vocab_id, concepts, latest=True, ann=None):
    d = version_dir / "concepts" / vocab_id
    (d / "annotations").mkdir(parents=True)
    lines = ["id\tconcept\tpos\tcount"] + [f"{i}\t{c}\tNOUN\t{10 - i}" for i, c in enumerate(concepts)]
    (d / "vocab.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (d / "meta.json").write_text(json.dumps({"vocab_id": vocab_id}), encoding="utf-8")
    for stem, recs in (ann or {}).items():
        with open(d / "annotations" / f"{stem}.jsonl", "w", encoding="utf-8") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
    if latest:
        (version_dir / "concepts" / "LATEST").write_text(vocab_id + "\n")


def test_opens_latest_and_reads_annotations(tmp_path):
    write_vocab(tmp_path, "aaa111", ["dog", "field"], ann={"00000": [
        {"key": "k0", "vocab_id": "aaa111", "caption_sha1": "x", "spans": [[4, 8, 0]]},
        {"key": "k1", "vocab_id": "aaa111", "caption_sha1": "y", "spans": []}]})
    write_vocab(tmp_path, "bbb222", ["cat"], latest=False)
    store = ConceptStore(tmp_path)
    assert store.vocab_id == "aaa111" and store.num_concepts == 2
    assert store.concept_to_id["field"] == 1
    assert store.annotations("00000") == {"k0": [[4, 8, 0]], "k1": []}
    assert ConceptStore(tmp_path, "bbb222").num_concepts == 1


def test_clear_errors(tmp_path):
    with pytest.raises(ConceptStoreError, match="no concept vocabulary"):
        ConceptStore(tmp_path)
    write_vocab(tmp_path, "aaa111", ["dog"], ann={"00000": [
        {"key": "k0", "vocab_id": "zzz999", "caption_sha1": "x", "spans": []}]})
    with pytest.raises(ConceptStoreError, match="not found"):
        ConceptStore(tmp_path, "nope")
    store = ConceptStore(tmp_path, "aaa111")
    with pytest.raises(ConceptStoreError, match="zzz999"):
        store.annotations("00000")
    with pytest.raises(ConceptStoreError, match="no annotations for shard '00001'"):
        store.annotations("00001")
