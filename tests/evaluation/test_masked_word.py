"""Masked-word scoring on hand-built items where the answer is known."""
import numpy as np
import pytest
import torch

from concepts.tokenizer import load_tokenizer
from mamo.evaluation.finegrained import Item
from mamo.evaluation.masked_word import build_queries, concept_id, per_type, score_by_head, score_queries
from mamo.model.masking import MASK_ID

ITEMS = [
    Item(0, "k0", "left_right", "a red circle left of a blue square", "a red circle right of a blue square"),
    Item(1, "k1", "color", "a small green triangle", "a small red triangle"),
    Item(2, "k2", "count", "three yellow circles", "two yellow circles"),
    Item(3, "k3", "above_below", "a red square above a blue circle", "a red square below a blue circle"),
]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def _oracle(queries, prefer_true: bool):
    """Logits that put all mass on one target of each query, looked up by image index."""
    by_image = {q.image_index: q for q in queries}

    def fn(idx, ids, mask, pos):
        out = torch.zeros(len(idx), pos.shape[1], 30522)
        for r, i in enumerate(idx):
            q = by_image[int(i)]
            for j, (t, n) in enumerate(zip(q.true_targets, q.neg_targets)):
                out[r, j, t if prefer_true else n] = 10.0
        return out

    return fn


def test_mlm_queries_mask_the_changed_word(tok):
    qs = build_queries(ITEMS, tok, 24, "mlm")
    assert len(qs) == 4
    for q, it in zip(qs, ITEMS):
        true_ids = tok.encode(it.true_caption, add_special_tokens=False).ids
        assert all(q.input_ids[p] == MASK_ID for p in q.positions)
        assert q.true_targets != q.neg_targets
        assert set(q.true_targets) <= set(true_ids)
    left = tok.token_to_id("left")
    assert left in qs[0].true_targets and left not in qs[0].input_ids  # the answer is not visible
    assert tok.token_to_id("right") in qs[0].neg_targets


def test_scores_follow_the_logits(tok):
    qs = build_queries(ITEMS, tok, 24, "mlm")
    assert score_queries(qs, 4, _oracle(qs, True)).tolist() == [1.0] * 4
    assert score_queries(qs, 4, _oracle(qs, False)).tolist() == [0.0] * 4
    flat = score_queries(qs, 4, lambda idx, ids, mask, pos: torch.zeros(len(idx), pos.shape[1], 30522))
    assert flat.tolist() == [0.0] * 4  # a tie is wrong, as in the benchmark


def test_concept_head_scores_only_words_in_the_vocabulary(tok):
    vocab = {"red": 0, "blue": 1, "green": 2, "circle": 3, "left": 4, "right": 5, "above": 6, "below": 7}
    qs = build_queries(ITEMS, tok, 24, "concept", vocab)
    assert [q.item for q in qs] == [0, 1, 3]  # "three"/"two" have no concept: no count query
    assert qs[0].true_targets[0] == 4 and qs[0].neg_targets[0] == 5
    assert qs[1].true_targets[0] == 2 and qs[1].neg_targets[0] == 0

    def fn(idx, ids, mask, pos):  # prefers the true concept for image 0, the swap for the others
        out = torch.zeros(len(idx), pos.shape[1], len(vocab))
        for r, i in enumerate(idx):
            q = next(q for q in qs if q.image_index == int(i))
            out[r, :, q.true_targets[0] if int(i) == 0 else q.neg_targets[0]] = 5.0
        return out

    s = score_queries(qs, 4, fn)
    assert s[0] == 1.0 and s[1] == 0.0 and np.isnan(s[2]) and s[3] == 0.0
    table = per_type(ITEMS, s)
    assert table["left_right"] == 100.0 and table["color"] == 0.0 and table["count"] is None
    assert table["overall"] == pytest.approx(100.0 / 3)


def test_concept_mlm_scores_concept_words_by_the_concept_head_and_others_by_the_mlm_head(tok):
    # "three"/"two" have no concept, and "square"/"circle" share one: both fall back to MLM
    vocab = {"red": 0, "blue": 1, "green": 2, "circle": 3, "square": 3, "left": 4, "right": 5}
    qs = build_queries(ITEMS, tok, 24, "concept_mlm", vocab)
    assert [(q.item, q.head) for q in qs] == [(0, "concept"), (1, "concept"), (2, "mlm"), (3, "mlm")]
    assert qs[0].true_targets[0] == 4 and qs[0].neg_targets[0] == 5  # concept ids
    assert tok.token_to_id("three") in qs[2].true_targets and tok.token_to_id("two") in qs[2].neg_targets
    assert tok.token_to_id("above") in qs[3].true_targets  # WordPiece ids
    # the same items, each scored as the pure settings would
    assert [(q.item, q.true_targets) for q in qs if q.head == "concept"] == \
        [(q.item, q.true_targets) for q in build_queries(ITEMS, tok, 24, "concept", vocab)[:2]]
    mlm = {q.item: q for q in build_queries(ITEMS, tok, 24, "mlm")}
    assert all(q.true_targets == mlm[q.item].true_targets for q in qs if q.head == "mlm")

    asked = []

    def logits_for(head):  # the concept head prefers the swap, the MLM head the true word
        n_classes = len(set(vocab.values())) if head == "concept" else 30522

        def fn(idx, ids, mask, pos):
            asked.append(head)
            out = torch.zeros(len(idx), pos.shape[1], n_classes)
            for r, i in enumerate(idx):
                q = next(q for q in qs if q.image_index == int(i))
                assert q.head == head
                for j, (t, n) in enumerate(zip(q.true_targets, q.neg_targets)):
                    out[r, j, t if head == "mlm" else n] = 5.0
            return out
        return fn

    s, counts = score_by_head(qs, 4, logits_for)
    assert s.tolist() == [0.0, 0.0, 1.0, 1.0] and counts == {"concept": 2, "mlm": 2}
    assert sorted(set(asked)) == ["concept", "mlm"]
    with pytest.raises(ValueError, match="concept vocabulary"):
        build_queries(ITEMS, tok, 24, "concept_mlm")


def test_concept_id_singular_and_refusals():
    assert concept_id("circles", {"circle": 3}) == 3
    assert concept_id("boxes", {"box": 1}) == 1
    assert concept_id("three", {"circle": 3}) is None
    with pytest.raises(ValueError, match="concept vocabulary"):
        build_queries(ITEMS, None, 24, "concept")
    with pytest.raises(ValueError, match="head"):
        build_queries(ITEMS, None, 24, "none")
