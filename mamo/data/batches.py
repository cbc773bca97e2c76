"""The text side of a batch: tokenisation + concept labels from the vocabulary's annotations.

Joins decoded images with ``concepts.encode.encode_batch`` over the captions and the concept
spans of the configured vocabulary version. A sample without an annotation line gets all
-100 labels and is counted (``missing_annotation``), never labelled wrongly or silently.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch

from mamo.data.caption_true import shift_spans

MISSING_ANNOTATION = "missing_annotation"
NO_CONCEPTS = "none"


class ConceptSpans:
    """Per-shard annotation lookup of one vocabulary (``concepts.store.ConceptStore``), cached."""

    def __init__(self, version_dir: str | Path, vocab_id: str = "latest", shard_stems: list[str] = ()):
        self.vocab_id: str | None = None
        self.num_concepts = 0
        self._store = None
        if vocab_id != NO_CONCEPTS:
            from concepts.store import ConceptStore, ConceptStoreError

            self._store = ConceptStore(version_dir, vocab_id)
            self.vocab_id = self._store.vocab_id
            self.num_concepts = self._store.num_concepts
            # A whole shard without annotations is a build problem: fail at start, not mid-epoch.
            missing = [s for s in shard_stems if not self._store.annotation_path(s).is_file()]
            if missing:
                raise ConceptStoreError(
                    f"vocabulary {self.vocab_id!r} has no annotation file for {len(missing)} shard(s) "
                    f"(e.g. {missing[0]!r}); run `python -m concepts annotate {version_dir}`")
        self._cache: dict[str, dict[str, list[list[int]]]] = {}

    @property
    def concept_to_id(self) -> dict[str, int]:
        return self._store.concept_to_id if self._store is not None else {}

    @property
    def enabled(self) -> bool:
        return self._store is not None

    def spans(self, shard_stem: str, key: str) -> list[list[int]] | None:
        """The key's spans, or None when the annotation file has no line for it."""
        if self._store is None:
            return []
        table = self._cache.get(shard_stem)
        if table is None:
            table = self._cache[shard_stem] = self._store.annotations(shard_stem)
        return table.get(key)


class TextEncoder:
    """Captions (+ their shards and keys) -> input_ids, attention_mask, concept_labels."""

    def __init__(self, concepts: ConceptSpans, max_len: int, label_pieces: str = "all", tokenizer: Any = None):
        from concepts.tokenizer import load_tokenizer

        self.concepts = concepts
        self.max_len = max_len
        self.label_pieces = label_pieces
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer()

    def __call__(self, captions: list[str], shard_stems: list[str], keys: list[str],
                 counts: Counter, edits: list[list[tuple[int, int, str]]] | None = None
                 ) -> dict[str, torch.Tensor]:
        """``edits``: per caption, how a caption-true flip changed it from the annotated one."""
        from concepts.encode import encode_batch

        spans_list = []
        for i, (stem, key) in enumerate(zip(shard_stems, keys)):
            spans = self.concepts.spans(stem, key)
            if spans is None:
                counts[MISSING_ANNOTATION] += 1
                spans = []  # -> every label of this row is -100
            elif edits and edits[i]:
                spans = shift_spans(spans, edits[i], self.concepts.concept_to_id)
            spans_list.append(spans)
        return encode_batch(captions, spans_list, self.tokenizer, self.max_len, self.label_pieces)


def assemble_batch(images: torch.Tensor, keys: list[str], captions: list[str],
                   text: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The batch dict of docs/ARCHITECTURE.md section 3."""
    if not (images.shape[0] == len(keys) == len(captions) == text["input_ids"].shape[0]):
        raise RuntimeError(f"batch parts disagree: {images.shape[0]} images, {len(keys)} keys, "
                           f"{len(captions)} captions, {text['input_ids'].shape[0]} token rows")
    return {"image": images, "input_ids": text["input_ids"], "attention_mask": text["attention_mask"],
            "concept_labels": text["concept_labels"], "keys": list(keys), "captions": list(captions)}
