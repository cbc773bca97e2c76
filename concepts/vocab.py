"""The concept vocabulary: counting, thresholds, deterministic ids, and its on-disk version.

Order and ids: concepts sorted by count (descending), ties by the concept string (code point
order); ids are dense 0..N-1 in that order. There are no reserved ids ("no concept" is -100
in label tensors). A concept is a lemma; its ``pos`` column is the POS it most often had
(ties: alphabetical). Everything written is a pure function of the counts, the parameters,
the spaCy pipeline identity and the manifest hash, so the same corpus gives byte-identical
files and the same ``vocab_id``.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from concepts.config import VocabConfig
from concepts.store import VOCAB_HEADER

VOCAB_ID_LEN = 16


@dataclass(frozen=True)
class VocabEntry:
    id: int
    concept: str
    pos: str
    count: int


def merge_counts(counters: Iterable[Counter]) -> Counter:
    total: Counter = Counter()
    for c in counters:
        total.update(c)
    return total


def build_vocab(counts: Counter, cfg: VocabConfig) -> list[VocabEntry]:
    """``(lemma, pos) -> n`` counts -> the thresholded, capped, ordered vocabulary."""
    per_concept: Counter = Counter()
    per_pos: dict[str, Counter] = defaultdict(Counter)
    for (lemma, pos), n in counts.items():
        per_concept[lemma] += n
        per_pos[lemma][pos] += n
    kept = [(c, n) for c, n in per_concept.items() if n >= cfg.min_count]
    kept.sort(key=lambda cn: (-cn[1], cn[0]))
    kept = kept[: cfg.max_size]
    entries = []
    for i, (concept, n) in enumerate(kept):
        pos = min(per_pos[concept].items(), key=lambda pn: (-pn[1], pn[0]))[0]
        entries.append(VocabEntry(i, concept, pos, n))
    return entries


def vocab_tsv_bytes(entries: list[VocabEntry]) -> bytes:
    lines = ["\t".join(VOCAB_HEADER)]
    lines += [f"{e.id}\t{e.concept}\t{e.pos}\t{e.count}" for e in entries]
    return ("\n".join(lines) + "\n").encode("utf-8")


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def build_key(pipeline: dict[str, str], params: dict[str, Any], manifest_sha256: str) -> str:
    """What a build depends on besides the counts: same key + same data = nothing to do."""
    return hashlib.sha256(canonical_json(
        {"pipeline": pipeline, "params": params, "manifest_sha256": manifest_sha256})).hexdigest()


def compute_vocab_id(tsv: bytes, key: str) -> str:
    """Content hash of the vocabulary plus everything it was built with."""
    h = hashlib.sha256()
    h.update(hashlib.sha256(tsv).digest())
    h.update(key.encode("ascii"))
    return h.hexdigest()[:VOCAB_ID_LEN]


def meta_json_bytes(vocab_id: str, pipeline: dict[str, str], params: dict[str, Any],
                    manifest_sha256: str, key: str, num_concepts: int,
                    stats: dict[str, Any]) -> bytes:
    """meta.json: no timestamps, sorted keys, so that rebuilds are byte-identical."""
    meta = {"vocab_id": vocab_id, "format": "mamo-concepts/1", "spacy_pipeline": pipeline,
            "params": params, "manifest_sha256": manifest_sha256, "build_key": key,
            "num_concepts": num_concepts, "stats": stats}
    return (json.dumps(meta, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
