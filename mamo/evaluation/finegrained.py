"""Fine-grained benchmark on synthetic data: the true caption against one-change negatives.

For each image, negatives are made from its ground-truth scene (``KEY.json["synthetic"]``) by
changing exactly ONE field and re-rendering with ``ingest.synthetic.render_caption``:

- ``color`` / ``shape`` / ``size``: the attribute of one described object (for a ``count``
  scene, of the counted objects, which are identical copies; for a ``relation`` scene, of the
  subject or the object, picked at random);
- ``count``: the number of a ``count`` scene (another value in 2..4);
- ``left_right``: "left of" <-> "right of" in a ``relation`` scene;
- ``above_below``: "above" <-> "below" in a ``relation`` scene.

Every negative is false of the image: single and count scenes hold only the described
objects, a flipped relation is false of the boxes, and in relation scenes the new description
never equals the other object's (so "a red circle left of a red circle" cannot appear).

A model scores (image, caption) pairs; an item is correct when the true caption scores
strictly higher than the negative (ties count as wrong, as in retrieval). Accuracy is
reported per change type and overall (mean over items); chance is 50%. ``build_items(...,
items_per_type=N)`` keeps the first N items of each type (in image order), so a held-out
version with enough relation and count scenes gives the same item count for every type.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ingest.synthetic import COLORS, MAX_COUNT, MIN_COUNT, SHAPES, SIZES, describe, render_caption

CHANGE_TYPES: tuple[str, ...] = ("color", "shape", "size", "count", "left_right", "above_below")
_ATTR_VALUES: dict[str, tuple[str, ...]] = {"color": COLORS, "shape": SHAPES, "size": SIZES}
_FLIP: dict[str, tuple[str, str]] = {
    "left of": ("left_right", "right of"), "right of": ("left_right", "left of"),
    "above": ("above_below", "below"), "below": ("above_below", "above"),
}


@dataclass(frozen=True)
class Negative:
    change: str  # one of CHANGE_TYPES
    field: str  # which field was changed, e.g. "objects[0].color" or "spec.relation"
    old: Any
    new: Any
    scene: dict[str, Any]
    caption: str


@dataclass(frozen=True)
class Item:
    """One benchmark question: image ``image_index`` with its true and one negative caption."""

    image_index: int
    key: str
    change: str
    true_caption: str
    negative_caption: str


def _with_attr(scene: dict[str, Any], obj_ids: Sequence[int], attr: str, value: str) -> dict[str, Any]:
    out = copy.deepcopy(scene)
    for i in obj_ids:
        out["objects"][i][attr] = value
    return out


def make_negatives(scene: dict[str, Any], rng: np.random.Generator) -> list[Negative]:
    """One negative per change type that applies to this scene (3 or 4 of them)."""
    spec = scene["spec"]
    kind = spec["kind"]
    truth = render_caption(scene)
    negatives: list[Negative] = []

    # Which object ids an attribute change touches, and the description it must not collide with.
    if kind == "single":
        targets, other = [spec["object"]], None
    elif kind == "count":
        # the counted objects are identical copies: change them all, it is one described thing
        proto = scene["objects"][spec["object"]]
        targets = [i for i, o in enumerate(scene["objects"]) if describe(o) == describe(proto)]
        other = None
    elif kind == "relation":
        pick = int(rng.integers(2))
        target = spec["subject"] if pick == 0 else spec["object"]
        other_id = spec["object"] if pick == 0 else spec["subject"]
        targets, other = [target], describe(scene["objects"][other_id])
    else:
        raise ValueError(f"unknown scene kind {kind!r}")

    for attr, values in _ATTR_VALUES.items():
        old = scene["objects"][targets[0]][attr]
        choices = []
        for v in values:
            if v == old:
                continue
            cand = _with_attr(scene, targets, attr, v)
            if other is not None and describe(cand["objects"][targets[0]]) == other:
                continue
            choices.append(v)
        if not choices:
            continue
        new = choices[int(rng.integers(len(choices)))]
        neg_scene = _with_attr(scene, targets, attr, new)
        field = f"objects[{targets[0]}].{attr}" if len(targets) == 1 else f"objects[*].{attr}"
        negatives.append(Negative(attr, field, old, new, neg_scene, render_caption(neg_scene)))

    if kind == "count":
        old_n = int(spec["count"])
        choices = [n for n in range(MIN_COUNT, MAX_COUNT + 1) if n != old_n]
        new_n = choices[int(rng.integers(len(choices)))]
        neg_scene = copy.deepcopy(scene)
        neg_scene["spec"]["count"] = new_n
        negatives.append(Negative("count", "spec.count", old_n, new_n, neg_scene,
                                  render_caption(neg_scene)))
    if kind == "relation":
        change, new_rel = _FLIP[spec["relation"]]
        neg_scene = copy.deepcopy(scene)
        neg_scene["spec"]["relation"] = new_rel
        negatives.append(Negative(change, "spec.relation", spec["relation"], new_rel, neg_scene,
                                  render_caption(neg_scene)))

    for n in negatives:  # the benchmark is meaningless if a negative reads as the truth
        assert n.caption != truth, (truth, n)
    return negatives


def build_items(keys: Sequence[str], scenes: Sequence[dict[str, Any]], seed: int = 0,
                items_per_type: int | None = None) -> list[Item]:
    """The benchmark items for images ``0..len(scenes)-1`` (deterministic given ``seed``).

    ``items_per_type``: keep at most this many items of each change type, the first ones in
    image order (so a smaller cap gives a subset of a larger one's items); None = all."""
    items: list[Item] = []
    kept: dict[str, int] = {}
    for idx, (key, scene) in enumerate(zip(keys, scenes)):
        # a per-image stream: adding images never changes the negatives of earlier ones
        rng = np.random.default_rng([int(seed), int(scene.get("seed", 0)), int(scene.get("index", idx))])
        truth = render_caption(scene)
        for neg in make_negatives(scene, rng):
            if items_per_type is not None and kept.get(neg.change, 0) >= items_per_type:
                continue
            kept[neg.change] = kept.get(neg.change, 0) + 1
            items.append(Item(idx, key, neg.change, truth, neg.caption))
    return items


def items_per_type(items: Sequence[Item]) -> dict[str, int]:
    """How many items of each change type (in ``CHANGE_TYPES`` order)."""
    counts = {c: 0 for c in CHANGE_TYPES}
    for it in items:
        counts[it.change] += 1
    return {c: n for c, n in counts.items() if n}


# (image indices, captions) -> scores, one per pair; higher = better match.
CaptionScorer = Callable[[np.ndarray, list[str]], np.ndarray]


def score_items(items: Sequence[Item], score_fn: CaptionScorer, batch_size: int = 128) -> np.ndarray:
    """Boolean array: for each item, did the true caption score strictly above the negative?

    Each distinct (image, caption) pair is scored once (the true caption is shared by all
    negatives of an image).
    """
    pairs = sorted({(it.image_index, c) for it in items for c in (it.true_caption, it.negative_caption)})
    scores: dict[tuple[int, str], float] = {}
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s : s + batch_size]
        out = np.asarray(score_fn(np.array([p[0] for p in chunk]), [p[1] for p in chunk]), dtype=float)
        scores.update({p: float(v) for p, v in zip(chunk, out)})
    return np.array([scores[(it.image_index, it.true_caption)] > scores[(it.image_index, it.negative_caption)]
                     for it in items], dtype=bool)


def accuracy_table(items: Sequence[Item], correct: np.ndarray) -> dict[str, float]:
    """Accuracy in percent per change type present, ``overall`` (all items) and ``n_items``."""
    correct = np.asarray(correct, dtype=bool)
    out: dict[str, float] = {}
    for change in CHANGE_TYPES:
        mask = np.array([it.change == change for it in items], dtype=bool)
        if mask.any():
            out[change] = float(100.0 * correct[mask].mean())
    out["overall"] = float(100.0 * correct.mean()) if len(items) else 0.0
    out["n_items"] = float(len(items))
    return out


def evaluate_finegrained(items: Sequence[Item], scorers: dict[str, CaptionScorer]) -> dict[str, dict[str, float]]:
    """``{scorer_name: accuracy_table}`` for each scorer (e.g. ``{"itm": ..., "itc": ...}``)."""
    return {name: accuracy_table(items, score_items(items, fn)) for name, fn in scorers.items()}
