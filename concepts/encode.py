"""Captions + concept spans -> the text tensors of a batch (docs/ARCHITECTURE.md section 2).

A WordPiece token carries concept id c when its character range overlaps a concept span
``[start, end, c]`` of its caption. Special tokens and padding are never labelled.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

IGNORE_INDEX = -100
LABEL_PIECES = ("all", "first")


def encode_batch(
    captions: list[str],
    spans_list: list[list[list[int]]],
    tokenizer: Any,
    max_len: int,
    label_pieces: str = "all",
) -> dict[str, torch.Tensor]:
    """Tokenise ``captions`` to ``[CLS] ... [SEP]`` padded to ``max_len`` and label concepts.

    Returns int64 tensors ``input_ids``, ``attention_mask``, ``concept_labels``, each
    ``[B, max_len]``. Captions longer than ``max_len - 2`` pieces are cut and still end with
    [SEP]. ``label_pieces="first"`` labels only the first piece of each concept span.
    """
    if len(captions) != len(spans_list):
        raise ValueError(f"{len(captions)} captions but {len(spans_list)} span lists")
    if label_pieces not in LABEL_PIECES:
        raise ValueError(f"label_pieces must be one of {LABEL_PIECES}, got {label_pieces!r}")
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2 (room for [CLS] and [SEP]), got {max_len}")
    cls_id = tokenizer.token_to_id("[CLS]")
    sep_id = tokenizer.token_to_id("[SEP]")
    pad_id = tokenizer.token_to_id("[PAD]")
    batch = len(captions)
    input_ids = torch.full((batch, max_len), pad_id, dtype=torch.int64)
    attention_mask = torch.zeros((batch, max_len), dtype=torch.int64)
    labels = torch.full((batch, max_len), IGNORE_INDEX, dtype=torch.int64)
    # Special tokens are added here, not by the tokenizer, so truncation keeps [SEP] last
    # whatever post-processor or truncation setting the caller's tokenizer has.
    encodings = tokenizer.encode_batch(list(captions), add_special_tokens=False)
    body = max_len - 2
    for row, (enc, spans) in enumerate(zip(encodings, spans_list)):
        ids = enc.ids[:body]
        n = len(ids)
        input_ids[row, 0] = cls_id
        input_ids[row, 1 : n + 1] = torch.tensor(ids, dtype=torch.int64)
        input_ids[row, n + 1] = sep_id
        attention_mask[row, : n + 2] = 1
        if spans:
            row_labels = _label_tokens(enc.offsets[:n], spans, label_pieces == "first")
            for i, cid in row_labels:
                labels[row, i + 1] = cid
    return {"input_ids": input_ids, "attention_mask": attention_mask, "concept_labels": labels}


def _label_tokens(
    offsets: Sequence[tuple[int, int]], spans: Sequence[Sequence[int]], first_only: bool
) -> list[tuple[int, int]]:
    """(token index, concept id) for tokens overlapping a span; the earliest span wins."""
    ordered = sorted((int(s), int(e), int(c)) for s, e, c in spans)
    out: list[tuple[int, int]] = []
    labelled_spans: set[int] = set()
    j = 0
    for i, (ts, te) in enumerate(offsets):
        if te <= ts:
            continue
        # spans are sorted by start and tokens advance left to right: skip finished spans
        while j < len(ordered) and ordered[j][1] <= ts:
            j += 1
        k = j
        while k < len(ordered) and ordered[k][0] < te:
            s, e, cid = ordered[k]
            if s < te and ts < e:
                if not (first_only and k in labelled_spans):
                    out.append((i, cid))
                labelled_spans.add(k)
                break
            k += 1
    return out
