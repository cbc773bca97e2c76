"""Downstream metrics: VQA score, accuracy, box IoU (retrieval recall@k is
``mamo.evaluation.retrieval``, shared with the pre-training evaluation).

Pure Python without a model, so each is checked on hand-built cases.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
            "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_PUNCT = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$]")


def normalize_answer(answer: str) -> str:
    """A light version of the VQA answer normalisation: case, punctuation, articles, numbers."""
    a = answer.lower().replace("\n", " ").replace("\t", " ").strip()
    a = _PUNCT.sub(" ", a)
    a = re.sub(r"(?<!\d)\.(?!\d)", "", a)  # a period that is not a decimal point
    words = [_NUMBERS.get(w, w) for w in a.split() if w not in _ARTICLES]
    return " ".join(words)


def vqa_answer_scores(answers: Sequence[str]) -> dict[str, float]:
    """Soft score of every given answer: ``min(#humans who gave it / 3, 1)``.

    This is the VQA accuracy of predicting that answer (the form used as soft training
    targets); the official evaluation additionally averages it over the 10 leave-one-out
    subsets of annotators (``vqa_score_official``).
    """
    counts = Counter(normalize_answer(a) for a in answers)
    return {a: min(c / 3.0, 1.0) for a, c in counts.items()}


def vqa_score(prediction: str, answers: Sequence[str]) -> float:
    """``min(#humans who gave the prediction / 3, 1)``; 0 when unanswered."""
    return vqa_answer_scores(answers).get(normalize_answer(prediction), 0.0)


def vqa_score_official(prediction: str, answers: Sequence[str]) -> float:
    """The official VQA accuracy: the min(count/3, 1) score averaged over the leave-one-out
    subsets of the human answers (3 matches of 10 -> 0.9, not 1)."""
    p = normalize_answer(prediction)
    norm = [normalize_answer(a) for a in answers]
    if not norm:
        return 0.0
    if len(norm) == 1:
        return float(norm[0] == p)
    total = 0.0
    for i in range(len(norm)):
        others = norm[:i] + norm[i + 1:]
        total += min(sum(a == p for a in others) / 3.0, 1.0)
    return total / len(norm)


def accuracy(predictions: Sequence, targets: Sequence) -> float:
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    if not targets:
        return 0.0
    return sum(p == t for p, t in zip(predictions, targets)) / len(targets)


def xywh_to_xyxy(box: Sequence[float]) -> list[float]:
    x, y, w, h = box
    return [x, y, x + w, y + h]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``[x0, y0, x1, y1]`` boxes (0 for empty ones)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
