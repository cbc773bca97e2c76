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
    # Special tokens are added here, not by the tokenizer, so truncation keeps [SEP] last
    # whatever post-processor or truncation setting the caller's tokenizer has.
    encodings = tokenizer.encode_batch(list(captions), add_special_tokens=False)
    body = max_len - 2
    # plain lists first, one tensor per field at the end: per-row tensor writes cost ~5x more
    ids_rows, mask_rows, label_rows = [], [], []
    for enc, spans in zip(encodings, spans_list):
        ids = enc.ids[:body]
        n = len(ids)
        pad = body - n
        ids_rows.append([cls_id, *ids, sep_id] + [pad_id] * pad)
        mask_rows.append([1] * (n + 2) + [0] * pad)
        row = [IGNORE_INDEX] * max_len
        if spans:
            for i, cid in _label_tokens(enc.offsets[:n], spans, label_pieces == "first"):
                row[i + 1] = cid
        label_rows.append(row)
    shape = (len(captions), max_len)
    return {"input_ids": _tensor(ids_rows, shape), "attention_mask": _tensor(mask_rows, shape),
            "concept_labels": _tensor(label_rows, shape)}


def _tensor(rows: list[list[int]], shape: tuple[int, int]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64).reshape(shape)  # reshape: B = 0 gives [0, L]


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
