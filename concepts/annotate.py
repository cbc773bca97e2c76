"""Per-shard files of the concepts stage: extraction results (a cache) and annotations.

    concepts/_extracted/<extract_id>/<stem>.jsonl   {"key", "caption_sha1", "words", "concepts":
                                                      [[start, end, lemma, pos]], "skipped"?}
    concepts/<vocab_id>/annotations/<stem>.jsonl     {"key", "vocab_id", "caption_sha1",
                                                      "spans": [[start, end, concept_id]]}

The extraction cache depends only on the data and the extraction settings, so a new
threshold reuses it and spaCy does not run again. Both are written atomically
(``mamo.core.files``), so a reader never sees half a file.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from concepts.extract import Concept, ConceptExtractor, normalise_caption
from ingest.shards import iter_samples
from mamo.core.files import write_text

EXTRACTED_DIR = "_extracted"


def caption_sha1(raw: bytes) -> str:
    """sha1 of the caption's bytes exactly as stored in KEY.txt."""
    return hashlib.sha1(raw).hexdigest()


def shard_captions(tar_path: str | Path) -> list[tuple[str, bytes]]:
    """``(key, raw KEY.txt bytes)`` for every sample of a shard that has one, in tar order.

    Bytes, not str: invalid UTF-8 must reach the extractor to be counted, not crash here.
    """
    return [(s["__key__"], s["txt"]) for s in iter_samples(tar_path, exts=("txt",)) if "txt" in s]


def write_lines(path: Path, lines: list[str]) -> None:
    """One JSON record per line, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "".join(line + "\n" for line in lines))


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def distinct_texts(raws: Iterable[bytes], max_chars: int) -> list[str]:
    """The distinct normalised captions among ``raws``, first occurrence first.

    The first pass of a build: the union over shards is what spaCy has to see, once each.
    """
    texts: dict[str, None] = {}
    for raw in raws:
        text, _, _ = normalise_caption(raw, max_chars)
        if text is not None:
            texts.setdefault(text)
    return list(texts)


def shard_texts(tar_path: str | Path, max_chars: int) -> list[str]:
    """``distinct_texts`` of one shard's captions."""
    return distinct_texts((raw for _, raw in shard_captions(tar_path)), max_chars)


def write_extraction(samples: list[tuple[str, bytes]], out_path: str | Path,
                     extractor: ConceptExtractor,
                     known: Mapping[str, tuple[list[Concept], int]] | None = None) -> dict[str, Any]:
    """Extract ``(key, raw caption)`` samples of one shard and write its extraction file.

    ``known``: the shared pass's results (normalised text -> concepts, words); captions found
    there do not go through spaCy again. The file is the same either way.
    """
    result = extractor.extract([raw for _, raw in samples], known=known)
    lines = []
    for (key, raw), concepts, words in zip(samples, result.concepts, result.words):
        rec: dict[str, Any] = {"key": key, "caption_sha1": caption_sha1(raw), "words": words,
                               "concepts": [list(c) for c in concepts or []]}
        if concepts is None:
            rec["skipped"] = True
        lines.append(_dumps(rec))
    write_lines(Path(out_path), lines)
    return {"samples": len(samples), "unique": result.unique, "truncated": result.truncated,
            "skipped": dict(result.skipped)}


def extract_shard(tar_path: str | Path, out_path: str | Path, extractor: ConceptExtractor,
                  known: Mapping[str, tuple[list[Concept], int]] | None = None) -> dict[str, Any]:
    """Run the extractor over one shard's captions and write its extraction file."""
    return write_extraction(shard_captions(tar_path), out_path, extractor, known)


def read_extracted(path: str | Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def shard_counts(path: str | Path) -> tuple[Counter, dict[str, int]]:
    """``(lemma, pos) -> n`` of one extraction file, and its sample/word tallies."""
    counts: Counter = Counter()
    tally = {"samples": 0, "skipped": 0, "with_concept": 0, "concept_words": 0, "words": 0}
    for rec in read_extracted(path):
        tally["samples"] += 1
        tally["words"] += rec.get("words", 0)
        if rec.get("skipped"):
            tally["skipped"] += 1
        concepts = rec["concepts"]
        if concepts:
            tally["with_concept"] += 1
            tally["concept_words"] += len(concepts)
        counts.update((c[2], c[3]) for c in concepts)
    return counts, tally


def annotate_shard(extracted_path: str | Path, out_path: str | Path,
                   concept_to_id: dict[str, int], vocab_id: str) -> dict[str, int]:
    """Write one annotation line per sample key: the spans whose concept is in the vocabulary."""
    lines = []
    tally = {"samples": 0, "with_span": 0, "spans": 0}
    for rec in read_extracted(extracted_path):
        spans = [[c[0], c[1], concept_to_id[c[2]]] for c in rec["concepts"] if c[2] in concept_to_id]
        lines.append(_dumps({"key": rec["key"], "vocab_id": vocab_id,
                             "caption_sha1": rec["caption_sha1"], "spans": spans}))
        tally["samples"] += 1
        tally["with_span"] += bool(spans)
        tally["spans"] += len(spans)
    write_lines(Path(out_path), lines)
    return tally
