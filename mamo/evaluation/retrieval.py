"""Image-text retrieval metrics (R@1/5/10 both ways and their mean) and ITC->ITM re-ranking.

Conventions
-----------
- ``sim`` is an ``[n_images, n_texts]`` score matrix (higher = more similar).
- ``positives`` is a boolean ``[n_images, n_texts]`` relevance matrix: ``positives[i, j]`` is
  True when text j is a correct caption of image i. Several captions per image, and one
  caption text shared by several images (synthetic data repeats captions), are both allowed.
  ``positives_from_text_to_image`` builds it from the usual "image index of each text" list.
- Text retrieval (``tr@k``, image -> text): for image i, a hit when any correct text is among
  the top k texts. Image retrieval (``ir@k``, text -> image): the same per text.
- **Ties are pessimistic**: the rank of a correct item is the number of *wrong* candidates
  whose score is >= its score. A constant score matrix therefore gets R@1 = 0 (unless every
  candidate is correct), so a model that collapses to one embedding earns no credit from ties.
- Metrics are percentages (0-100); ``r_mean`` is the mean of the six (RSUM/6).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

KS: tuple[int, ...] = (1, 5, 10)
# Added below every ITM-scored candidate so that non-top-k candidates always rank after them
# while keeping their ITC order among themselves.
_OUTSIDE_TOPK_OFFSET = 1e6


def positives_from_text_to_image(txt2img: Sequence[int], n_images: int) -> np.ndarray:
    """Relevance matrix from the image index of each text (several texts per image allowed)."""
    txt2img = np.asarray(txt2img, dtype=np.int64)
    if txt2img.ndim != 1 or (txt2img.size and (txt2img.min() < 0 or txt2img.max() >= n_images)):
        raise ValueError("txt2img must be a 1-D list of image indices in [0, n_images)")
    pos = np.zeros((n_images, txt2img.size), dtype=bool)
    pos[txt2img, np.arange(txt2img.size)] = True
    return pos


def pessimistic_ranks(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """0-based rank of the best correct candidate per row (rows = queries).

    rank = number of wrong candidates scoring >= the best correct candidate. A row with no
    correct candidate gets rank = number of candidates (never a hit).
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if scores.shape != positives.shape:
        raise ValueError(f"scores {scores.shape} and positives {positives.shape} differ in shape")
    best_pos = np.where(positives, scores, -np.inf).max(axis=1, initial=-np.inf)
    wrong_ge = ((scores >= best_pos[:, None]) & ~positives).sum(axis=1)
    has_pos = positives.any(axis=1)
    return np.where(has_pos, wrong_ge, scores.shape[1])


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Percentage of queries whose best correct candidate is within the top k."""
    ranks = np.asarray(ranks)
    return float(100.0 * (ranks < k).mean()) if ranks.size else 0.0


def retrieval_metrics(
    sim: np.ndarray, positives: np.ndarray, ks: Sequence[int] = KS
) -> dict[str, float]:
    """``{"tr@1", "tr@5", "tr@10", "ir@1", "ir@5", "ir@10", "r_mean"}`` in percent."""
    sim = np.asarray(sim, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    tr_ranks = pessimistic_ranks(sim, positives)  # image queries over texts
    ir_ranks = pessimistic_ranks(sim.T, positives.T)  # text queries over images
    out: dict[str, float] = {}
    for k in ks:
        out[f"tr@{k}"] = recall_at_k(tr_ranks, k)
    for k in ks:
        out[f"ir@{k}"] = recall_at_k(ir_ranks, k)
    out["r_mean"] = float(np.mean([out[f"tr@{k}"] for k in ks] + [out[f"ir@{k}"] for k in ks]))
    return out


# A function scoring (image index, text index) pairs with the ITM head: two equal-length int
# arrays in, a float array of matching scores out (e.g. the logit or probability of "match").
PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def rerank_with_itm(
    sim_itc: np.ndarray, score_pairs: PairScorer, k: int, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """ALBEF-style re-ranking: the top-k candidates of each query by ITC get their ITM score.

    Returns ``(sim_i2t, sim_t2i)``, both ``[n_images, n_texts]``: in ``sim_i2t`` each image
    row's top-k texts (by ITC) carry the ITM score and all other texts carry their ITC score
    minus a large offset (so they rank below, in ITC order); ``sim_t2i`` does the same per
    text column. Use ``sim_i2t`` for text retrieval and ``sim_t2i`` for image retrieval.
    Each distinct pair is scored once, even when it is in both directions' top-k.
    """
    sim_itc = np.asarray(sim_itc, dtype=np.float64)
    n_img, n_txt = sim_itc.shape
    k_t = min(k, n_txt)
    k_i = min(k, n_img)
    # Stable sort by index on ties, so the candidate set is deterministic.
    top_t = np.argsort(-sim_itc, axis=1, kind="stable")[:, :k_t]  # [n_img, k_t]
    top_i = np.argsort(-sim_itc, axis=0, kind="stable")[:k_i, :]  # [k_i, n_txt]
    pairs_i2t = np.stack([np.repeat(np.arange(n_img), k_t), top_t.reshape(-1)], axis=1)
    pairs_t2i = np.stack([top_i.T.reshape(-1), np.repeat(np.arange(n_txt), k_i)], axis=1)
    pairs = np.unique(np.concatenate([pairs_i2t, pairs_t2i]), axis=0)
    scores = np.empty(len(pairs), dtype=np.float64)
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s : s + batch_size]
        scores[s : s + batch_size] = np.asarray(score_pairs(chunk[:, 0], chunk[:, 1]), dtype=np.float64)
    itm = {(int(i), int(j)): float(v) for (i, j), v in zip(pairs, scores)}

    sim_i2t = sim_itc - _OUTSIDE_TOPK_OFFSET
    for i, j in pairs_i2t:
        sim_i2t[i, j] = itm[(int(i), int(j))]
    sim_t2i = sim_itc - _OUTSIDE_TOPK_OFFSET
    for i, j in pairs_t2i:
        sim_t2i[i, j] = itm[(int(i), int(j))]
    return sim_i2t, sim_t2i


def reranked_metrics(
    sim_i2t: np.ndarray, sim_t2i: np.ndarray, positives: np.ndarray, ks: Sequence[int] = KS
) -> dict[str, float]:
    """Metrics where text retrieval reads ``sim_i2t`` and image retrieval reads ``sim_t2i``."""
    tr = retrieval_metrics(sim_i2t, positives, ks)
    ir = retrieval_metrics(sim_t2i, positives, ks)
    out = {f"tr@{k}": tr[f"tr@{k}"] for k in ks}
    out.update({f"ir@{k}": ir[f"ir@{k}"] for k in ks})
    out["r_mean"] = float(np.mean(list(out.values())))
    return out
