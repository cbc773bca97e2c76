"""``extract.spatial_and_number_words``: spatial words and numerals as concepts (default off)."""
import shutil

import pytest
from concepts_testdata import make_version, tree_bytes

from concepts.build import annotate_existing, build_concepts
from concepts.config import ConceptsConfig, ExtractConfig, VocabConfig
from concepts.extract import ConceptExtractor
from concepts.store import ConceptStore
from mamo.core.config import load_config

CAPTIONS = ["a small red circle to the left of a large green cross",
            "a blue square above a red circle",
            "a yellow triangle below a white cross",
            "three large blue squares",
            "two small red circles"]
PLURAL = {"squares": "square", "circles": "circle"}


@pytest.fixture(scope="module")
def extractors():
    return (ConceptExtractor(ExtractConfig()),
            ConceptExtractor(ExtractConfig(spatial_and_number_words=True)))


def words(result, captions):
    return [[cap[s:e] for s, e, _, _ in concepts] for cap, concepts in zip(captions, result.concepts)]


def test_off_keeps_content_words_only(extractors):
    off, _ = extractors
    got = words(off.extract(CAPTIONS), CAPTIONS)
    flat = {w for ws in got for w in ws}
    assert not {"above", "below", "three", "two", "to", "the", "of", "a"} & flat
    assert got[3] == ["large", "blue", "squares"]


def test_on_adds_spatial_words_and_numerals_at_their_tokens(extractors):
    _, on = extractors
    r = on.extract(CAPTIONS)
    assert words(r, CAPTIONS) == [
        ["small", "red", "circle", "left", "large", "green", "cross"],  # "to the left of" -> left
        ["blue", "square", "above", "red", "circle"],
        ["yellow", "triangle", "below", "white", "cross"],
        ["three", "large", "blue", "squares"],
        ["two", "small", "red", "circles"]]
    lemmas = {c[2]: c[3] for cs in r.concepts for c in cs}
    assert lemmas["above"] == "ADP" and lemmas["three"] == "NUM" and lemmas["square"] == "NOUN"
    # the rest of the stop words still give nothing; digits still fail require_alpha
    r2 = on.extract(["it is on the top of the 2 boxes"])
    assert [c[2] for c in r2.concepts[0]] == ["top", "box"]


def test_key_is_read_from_config():
    assert load_config(ConceptsConfig, None, []).extract.spatial_and_number_words is False
    c = load_config(ConceptsConfig, None, ["extract.spatial_and_number_words=true"])
    assert c.extract.spatial_and_number_words is True


def _cfg(on: bool) -> ConceptsConfig:
    c = ConceptsConfig(show_progress=False)
    c.vocab = VocabConfig(min_count=1)
    c.extract = ExtractConfig(spatial_and_number_words=on)
    return c


def test_build_default_unchanged_on_gives_ids_at_the_right_spans(tmp_path):
    vdir = make_version(tmp_path, [CAPTIONS])
    off = build_concepts(vdir, _cfg(False))
    # the recorded settings are those of before the key existed, so ids and bytes stay
    assert set(ConceptStore(vdir, off.vocab_id).meta["params"]["extract"]) == {
        "pos", "max_chars", "require_alpha"}
    on = build_concepts(vdir, _cfg(True))
    assert on.vocab_id != off.vocab_id and on.num_concepts > off.num_concepts
    store = ConceptStore(vdir, on.vocab_id)
    assert store.meta["params"]["extract"]["spatial_and_number_words"] is True
    assert {"left", "above", "below", "two", "three"} <= set(store.concepts)
    ann = store.annotations("00000")
    by_caption = dict(zip(sorted(ann), CAPTIONS))
    for key, spans in ann.items():
        cap = by_caption[key]
        for s, e, cid in spans:  # every span is a whole word whose lemma is its concept
            assert store.concepts[cid] == PLURAL.get(cap[s:e], cap[s:e])
    key = next(k for k, c in by_caption.items() if c.startswith("a blue square above"))
    cap = by_caption[key]
    s = cap.index("above")
    assert [s, s + 5, store.concept_to_id["above"]] in [list(x) for x in ann[key]]
    # rebuilding lost annotations with spaCy again uses the recorded setting
    want = tree_bytes(store.dir)
    shutil.rmtree(vdir / "concepts" / "_extracted")
    store.annotation_path("00000").unlink()
    assert annotate_existing(vdir, on.vocab_id, show_progress=False) == ["00000"]
    assert tree_bytes(store.dir) == want
