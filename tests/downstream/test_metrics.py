import pytest

from mamo.downstream.metrics import (
    accuracy, iou, normalize_answer, vqa_answer_scores, vqa_score,
    vqa_score_official, xywh_to_xyxy,
)


def test_vqa_soft_score_counts():
    answers = ["red"] * 2 + ["blue"] * 8
    assert vqa_score("red", answers) == pytest.approx(2 / 3)
    assert vqa_score("blue", answers) == 1.0
    assert vqa_score("green", answers) == 0.0
    assert vqa_score("Red.", answers) == pytest.approx(2 / 3)  # normalised
    assert vqa_answer_scores(["two", "2", "2"]) == {"2": 1.0}


def test_vqa_official_leave_one_out():
    answers = ["yes"] * 3 + ["no"] * 7
    # 3 of the 10 subsets lose a "yes" (2/3), the other 7 keep three (1)
    assert vqa_score_official("yes", answers) == pytest.approx((3 * 2 / 3 + 7) / 10)
    assert vqa_score_official("no", answers) == 1.0
    assert vqa_score_official("maybe", answers) == 0.0


def test_normalize_answer():
    assert normalize_answer("  The Two Dogs! ") == "2 dogs"
    assert normalize_answer("3.5") == "3.5"


def test_accuracy():
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    with pytest.raises(ValueError):
        accuracy([1], [1, 2])


def test_iou_hand_cases():
    assert iou([0, 0, 2, 2], [0, 0, 2, 2]) == 1.0
    assert iou([0, 0, 2, 2], [1, 0, 3, 2]) == pytest.approx(2 / 6)
    assert iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0
    assert iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0
    assert xywh_to_xyxy([1, 2, 3, 4]) == [1, 2, 4, 6]
