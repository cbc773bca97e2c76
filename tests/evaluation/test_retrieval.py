"""Retrieval metrics on hand-built similarity matrices (perfect, reversed, random, ties)."""
import numpy as np
import pytest

from mamo.evaluation.retrieval import (
    pessimistic_ranks,
    positives_from_text_to_image,
    reranked_metrics,
    rerank_with_itm,
    retrieval_metrics,
)


def test_perfect_identity_gives_100():
    m = retrieval_metrics(np.eye(12), np.eye(12, dtype=bool))
    assert all(v == 100.0 for v in m.values())
    assert set(m) == {"tr@1", "tr@5", "tr@10", "ir@1", "ir@5", "ir@10", "r_mean"}


def test_reversed_ranks_correct_last():
    n = 12
    sim = -np.eye(n)  # the correct pair is the worst score of every row and column
    m = retrieval_metrics(sim, np.eye(n, dtype=bool))
    assert m["tr@1"] == m["tr@5"] == m["tr@10"] == 0.0
    assert m["ir@10"] == 0.0
    # with 12 candidates the correct one is at rank 11: inside top 12 only
    assert (pessimistic_ranks(sim, np.eye(n, dtype=bool)) == n - 1).all()


def test_known_partial_ranks():
    # image 0: correct text ranked 1st; image 1: 2nd; image 2: 3rd (by hand)
    sim = np.array([[0.9, 0.1, 0.0], [0.8, 0.5, 0.1], [0.7, 0.6, 0.2]])
    pos = np.eye(3, dtype=bool)
    ranks = pessimistic_ranks(sim, pos)
    assert ranks.tolist() == [0, 1, 2]
    m = retrieval_metrics(sim, pos, ks=(1, 2))
    assert m["tr@1"] == pytest.approx(100 / 3)
    assert m["tr@2"] == pytest.approx(200 / 3)
    # text queries (columns): text0 -> image0 best; text1 -> image2 (0.6) beats image1 (0.5)
    assert pessimistic_ranks(sim.T, pos.T).tolist() == [0, 1, 0]


def test_random_is_near_chance():
    rng = np.random.default_rng(0)
    n = 400
    m = retrieval_metrics(rng.normal(size=(n, n)), np.eye(n, dtype=bool))
    # chance R@10 = 10/400 = 2.5%
    assert m["tr@10"] < 8 and m["ir@10"] < 8
    assert m["tr@1"] < 3


def test_ties_are_pessimistic():
    n = 10
    m = retrieval_metrics(np.zeros((n, n)), np.eye(n, dtype=bool))
    assert m["tr@1"] == 0.0 and m["ir@1"] == 0.0
    # a tie with 4 wrong candidates puts the correct one at rank 4: in top 5, not top 4
    sim = np.zeros((1, 5))
    assert pessimistic_ranks(sim, np.array([[True, False, False, False, False]])).tolist() == [4]
    # ties among correct candidates do not hurt
    assert pessimistic_ranks(np.zeros((1, 3)), np.array([[True, True, False]])).tolist() == [1]


def test_several_captions_per_image():
    # 2 images, 4 texts; texts 0,1 belong to image 0, texts 2,3 to image 1
    pos = positives_from_text_to_image([0, 0, 1, 1], 2)
    assert pos.shape == (2, 4) and pos.sum() == 4
    sim = np.array([[0.1, 0.9, 0.5, 0.2], [0.3, 0.4, 0.1, 0.8]])
    m = retrieval_metrics(sim, pos, ks=(1,))
    assert m["tr@1"] == 100.0  # best text of each image is one of its own
    # text 0 prefers image 1 (0.3 > 0.1), text 2 prefers image 0 (0.5 > 0.1): 2 misses of 4
    assert m["ir@1"] == 50.0
    with pytest.raises(ValueError):
        positives_from_text_to_image([0, 2], 2)


def test_rerank_fixes_itc_mistakes_within_topk():
    n = 6
    rng = np.random.default_rng(1)
    # ITC: the correct text is 2nd in every row (a distractor beats it)
    sim = np.eye(n) * 0.5 + rng.uniform(0, 0.1, size=(n, n))
    for i in range(n):
        sim[i, (i + 1) % n] = 1.0
        sim[(i + 1) % n, i] = max(sim[(i + 1) % n, i], 0.0)
    pos = np.eye(n, dtype=bool)
    assert retrieval_metrics(sim, pos)["tr@1"] == 0.0
    calls = []

    def perfect_itm(ii, jj):
        calls.append(len(ii))
        return (ii == jj).astype(float)

    s_i2t, s_t2i = rerank_with_itm(sim, perfect_itm, k=2)
    m = reranked_metrics(s_i2t, s_t2i, pos)
    assert m["tr@1"] == 100.0
    # pairs scored once: at most n*k per direction, shared pairs deduplicated
    assert sum(calls) <= 2 * n * 2
    # k=1: ITM sees only the ITC winner, cannot recover the correct text
    s_i2t1, s_t2i1 = rerank_with_itm(sim, perfect_itm, k=1)
    assert reranked_metrics(s_i2t1, s_t2i1, pos)["tr@1"] == 0.0
    # outside the top-k, ITC order is kept: correct text is 2nd there
    assert pessimistic_ranks(s_i2t1, pos).tolist() == [1] * n


def test_recall_at_k_hand_built():
    # (moved from tests/downstream/test_metrics.py with downstream.metrics.recall_at_k: the one
    # retrieval metric; tr_r@k/ir_r@k are named tr@k/ir@k here)
    # 3 images, 4 texts; texts 0,1 -> image 0, text 2 -> image 1, text 3 -> image 2
    t2i = [0, 0, 1, 2]
    sim = np.array([
        [0.1, 0.9, 0.0, 0.1],   # image 0: best text is 1 (positive) -> rank 0
        [0.0, 0.1, 0.3, 0.5],   # image 1: text 3 first, its text 2 second
        [0.9, 0.0, 0.1, 0.2],   # image 2: text 0, 3 -> text 3 at rank 1
    ])
    r = retrieval_metrics(sim, positives_from_text_to_image(t2i, 3), ks=(1, 2))
    assert r["tr@1"] == pytest.approx(100 / 3)
    assert r["tr@2"] == pytest.approx(100.0)
    # text columns: t0 -> image 2 best (image 0 second), t1 -> image 0 best,
    # t2 -> image 1 best, t3 -> image 1 best (image 2 second)
    assert r["ir@1"] == pytest.approx(50.0)
    assert r["ir@2"] == pytest.approx(100.0)
    assert r["r_mean"] == pytest.approx((100 / 3 + 100 + 50 + 100) / 4)
