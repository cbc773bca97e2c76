"""Masked-word scoring: given the image, does the model's text head prefer the true word to
its swap at the masked position?

For a benchmark item, the changed word of the TRUE caption ("left" in "... left of ...",
"red", "three", "small", "circle") is masked and the fused student runs on (image, masked
caption); the item is correct when the head's log-probability of the true target exceeds
that of the swapped one (strictly; ties are wrong). This reads out what masked modelling
trains, where ITM/ITC read out what contrastive matching trains.

Targets, by the head the model was trained with (``loss.text_target``):

- ``mlm``: WordPiece ids. The true and negative captions must tokenise to the same length;
  the positions where their ids differ are masked together and the summed log-probabilities
  of the true pieces and of the negative's pieces are compared.
- ``concept``: concept ids of the two words (the word, else the word without a plural "s"/
  "es", looked up in the run's concept vocabulary). All pieces of the true word are masked
  and every one is scored against both concept ids (summed). When either word has no
  concept, the item is not available: NaN, never a guess.
- ``concept_mlm``: a concept head and a token-MLM head (``mlm_head``), trained at the masked
  tokens without a concept. An item whose two words have distinct concepts is a ``concept``
  query, scored by the concept head; every other item (a word without a concept, e.g.
  "three"/"two", or both words of one concept) falls back to an ``mlm`` query, scored by the
  MLM head, under the ``mlm`` rules (same piece counts, else NaN). ``Query.head`` says which;
  the MLM head never trained at concept-labelled tokens, so a fallback item whose true word
  has a concept scores that head off its training positions.

A model without a text head (``text_target=none`` or ``w_mmm=0``) has no masked-word score.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from mamo.evaluation.finegrained import CHANGE_TYPES, Item

_WORD = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True)
class Query:
    """The masked true caption of one item and the two targets at its masked positions."""

    item: int  # index into the item list
    image_index: int
    input_ids: list[int]  # [CLS] ... [SEP] [PAD]..., the changed positions already [MASK]
    attention_mask: list[int]
    positions: list[int]  # masked positions in the text sequence
    true_targets: list[int]  # class id per position
    neg_targets: list[int]
    head: str = "concept"  # what the targets are, hence which head scores them: "concept" | "mlm"


# (image indices [B], input_ids [B, L], attention_mask [B, L], positions [B, P]) -> logits [B, P, C]
TextLogits = Callable[[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _encode(tokenizer: Any, text: str, max_len: int) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """(ids with [CLS]/[SEP] and padding, attention mask, char offsets per id, (0, 0) for specials)."""
    from concepts.encode import encode_batch

    enc = encode_batch([text], [[]], tokenizer, max_len)
    ids, mask = enc["input_ids"][0].tolist(), enc["attention_mask"][0].tolist()
    body = tokenizer.encode(text, add_special_tokens=False).offsets[: max_len - 2]
    offsets = [(0, 0), *body, (0, 0)] + [(0, 0)] * (max_len - 2 - len(body))
    return ids, mask, offsets


def _changed_word(true: str, neg: str) -> tuple[tuple[int, int], str, str] | None:
    """(char span in ``true``, true word, negative word) when exactly one word differs."""
    a, b = list(_WORD.finditer(true)), list(_WORD.finditer(neg))
    if len(a) != len(b):
        return None
    diff = [(x, y) for x, y in zip(a, b) if x.group().lower() != y.group().lower()]
    if len(diff) != 1:
        return None
    x, y = diff[0]
    return (x.start(), x.end()), x.group().lower(), y.group().lower()


def concept_id(word: str, concept_to_id: Mapping[str, int]) -> int | None:
    """The concept id of ``word``, or of its singular (a trailing "es"/"s" dropped)."""
    for cand in (word, word[:-2] if word.endswith("es") else None, word[:-1] if word.endswith("s") else None):
        if cand and cand in concept_to_id:
            return int(concept_to_id[cand])
    return None


def build_queries(items: Sequence[Item], tokenizer: Any, max_len: int, target: str,
                  concept_to_id: Mapping[str, int] | None = None) -> list[Query]:
    """The queries of the items that have a masked-word score for this kind of head
    (``target``: the model's ``loss.text_target``, see the module docstring)."""
    from mamo.model.masking import MASK_ID

    if target not in ("mlm", "concept", "concept_mlm"):
        raise ValueError(f"masked-word scoring needs an 'mlm', 'concept' or 'concept_mlm' head, not {target!r}")
    if target != "mlm" and concept_to_id is None:
        raise ValueError("a concept head needs the concept vocabulary (concept_to_id)")
    queries: list[Query] = []
    cache: dict[str, tuple[list[int], list[int], list[tuple[int, int]]]] = {}

    def enc(text: str) -> tuple[list[int], list[int], list[tuple[int, int]]]:
        if text not in cache:
            cache[text] = _encode(tokenizer, text, max_len)
        return cache[text]

    def concept_targets(it: Item, offsets: list[tuple[int, int]]) -> tuple[list[int], list[int], list[int]] | None:
        changed = _changed_word(it.true_caption, it.negative_caption)
        if changed is None:
            return None
        (s, e), w_true, w_neg = changed
        c_true, c_neg = concept_id(w_true, concept_to_id), concept_id(w_neg, concept_to_id)
        if c_true is None or c_neg is None or c_true == c_neg:
            return None
        pos = [i for i, (ts, te) in enumerate(offsets) if te > ts and ts < e and s < te]
        return pos, [c_true] * len(pos), [c_neg] * len(pos)

    def mlm_targets(it: Item, ids: list[int], mask: list[int]) -> tuple[list[int], list[int], list[int]] | None:
        nids, nmask, _ = enc(it.negative_caption)
        if nmask != mask:
            return None  # different piece counts: no position-by-position comparison
        pos = [i for i, (a, b) in enumerate(zip(ids, nids)) if a != b]
        return pos, [ids[i] for i in pos], [nids[i] for i in pos]

    for n, it in enumerate(items):
        ids, mask, offsets = enc(it.true_caption)
        got, head = None, "mlm"
        if target != "mlm":
            got, head = concept_targets(it, offsets), "concept"
        if got is None and target != "concept":  # mlm, or concept_mlm's fallback
            got, head = mlm_targets(it, ids, mask), "mlm"
        if got is None or not got[0]:
            continue
        pos, true_t, neg_t = got
        masked = list(ids)
        for i in pos:
            masked[i] = MASK_ID
        queries.append(Query(n, it.image_index, masked, mask, pos, true_t, neg_t, head))
    return queries


@torch.inference_mode()
def score_queries(queries: Sequence[Query], n_items: int, logits_fn: TextLogits,
                  batch_size: int = 128) -> np.ndarray:
    """Per item: 1.0 (true target preferred), 0.0 (not), NaN (no query for the item)."""
    out = np.full(n_items, np.nan)
    for s in range(0, len(queries), batch_size):
        chunk = queries[s : s + batch_size]
        p = max(len(q.positions) for q in chunk)
        pos = torch.zeros(len(chunk), p, dtype=torch.long)
        valid = torch.zeros(len(chunk), p, dtype=torch.bool)
        tt = torch.zeros(len(chunk), p, dtype=torch.long)
        nt = torch.zeros(len(chunk), p, dtype=torch.long)
        for r, q in enumerate(chunk):
            k = len(q.positions)
            pos[r, :k] = torch.tensor(q.positions)
            tt[r, :k] = torch.tensor(q.true_targets)
            nt[r, :k] = torch.tensor(q.neg_targets)
            valid[r, :k] = True
        logits = logits_fn(np.array([q.image_index for q in chunk]),
                           torch.tensor([q.input_ids for q in chunk]),
                           torch.tensor([q.attention_mask for q in chunk]), pos).float()
        logp = torch.log_softmax(logits, dim=-1)
        lt = (logp.gather(-1, tt[..., None])[..., 0] * valid).sum(1)
        ln = (logp.gather(-1, nt[..., None])[..., 0] * valid).sum(1)
        for q, ok in zip(chunk, (lt > ln).tolist()):
            out[q.item] = 1.0 if ok else 0.0
    return out


def score_by_head(queries: Sequence[Query], n_items: int, logits_for: Callable[[str], TextLogits],
                  batch_size: int = 128) -> tuple[np.ndarray, dict[str, int]]:
    """:func:`score_queries` with each query scored by the head of its ``Query.head``
    (``logits_for(head)`` gives that head's logits function); also how many items each head
    scored. Every item has at most one query, so the per-head scores never overlap."""
    out = np.full(n_items, np.nan)
    counts: dict[str, int] = {}
    for head in sorted({q.head for q in queries}):
        part = [q for q in queries if q.head == head]
        s = score_queries(part, n_items, logits_for(head), batch_size)
        done = ~np.isnan(s)
        out[done] = s[done]
        counts[head] = int(done.sum())
    return out, counts


def per_type(items: Sequence[Item], scores: np.ndarray) -> dict[str, float | None]:
    """Accuracy in % per change type and ``overall`` over the scored items; None where a
    type has items but none could be scored."""
    out: dict[str, float | None] = {}
    ch = np.array([it.change for it in items])
    for c in CHANGE_TYPES:
        m = ch == c
        if m.any():
            v = scores[m]
            v = v[~np.isnan(v)]
            out[c] = float(100.0 * v.mean()) if v.size else None
    v = scores[~np.isnan(scores)]
    out["overall"] = float(100.0 * v.mean()) if v.size else None
    return out
