"""Augmentation that keeps the caption true, for samples whose ground truth is known.

The synthetic source stores each scene's objects and boxes in the sample's JSON
(``KEY.json["synthetic"]``). A random crop may cut an object out of the picture ("three red
circles" with two in view), and a horizontal flip turns "left of" into a lie. Here a crop is
drawn again until every object stays visible above a threshold (else the whole image), and a
flip swaps "left" and "right" in the caption (and in the scene, for checks). Samples without
a scene (web data) get the plain augmentation: nothing here applies to them.
"""
from __future__ import annotations

import copy
import json
import re
from typing import Any

import numpy as np

from mamo.data.config import AugmentConfig
from mamo.data.crops import random_resized_crop

_SIDE_SWAP = {"left": "right", "right": "left"}
_SIDE_WORD = re.compile(r"\b(left|right)\b")
_RELATION_FLIP = {"left of": "right of", "right of": "left of"}
# Crop draws before giving up and keeping the whole image (which hides nothing).
CROP_TRIES = 20


def scene_of(meta_bytes: bytes) -> dict[str, Any] | None:
    """The synthetic scene in a sample's JSON member, or None (web data, unreadable JSON)."""
    try:
        scene = json.loads(meta_bytes).get("synthetic")
    except (ValueError, AttributeError):
        return None
    return scene if isinstance(scene, dict) and scene.get("objects") else None


def visible_fraction(box: list[float], crop: tuple[int, int, int, int], w: int, h: int) -> float:
    """Share of a normalised ``box`` (x0, y0, x1, y1) inside the pixel window ``crop``
    (x, y, cw, ch) of a ``w`` x ``h`` image."""
    x0, y0, x1, y1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    cx, cy, cw, ch = crop
    ix = max(0.0, min(x1, cx + cw) - max(x0, cx))
    iy = max(0.0, min(y1, cy + ch) - max(y0, cy))
    area = max(1e-9, (x1 - x0) * (y1 - y0))
    return ix * iy / area


def caption_true_crop(w: int, h: int, scene: dict[str, Any], augment: AugmentConfig,
                      rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A random-resized crop that keeps every object of ``scene`` at least
    ``augment.min_visible`` visible; the whole image when ``CROP_TRIES`` draws fail."""

    boxes = [o["box"] for o in scene["objects"]]
    for _ in range(CROP_TRIES):
        crop = random_resized_crop(w, h, augment.crop_scale, augment.crop_ratio, rng)
        if all(visible_fraction(b, crop, w, h) >= augment.min_visible for b in boxes):
            return crop
    return 0, 0, w, h


def flip_caption(caption: str) -> tuple[str, list[tuple[int, int, str]]]:
    """The caption of the mirrored image ("left" <-> "right") and its edits as
    ``(position in the original, length change, new word)``, for moving concept spans."""
    edits: list[tuple[int, int, str]] = []

    def swap(m: re.Match) -> str:
        new = _SIDE_SWAP[m.group(1)]
        edits.append((m.start(), len(new) - len(m.group(1)), new))
        return new

    return _SIDE_WORD.sub(swap, caption), edits


def shift_spans(spans: list[list[int]], edits: list[tuple[int, int, str]],
                concept_ids: dict[str, int]) -> list[list[int]]:
    """Concept spans ``[start, end, id]`` of the original caption, moved to the edited one.
    A span that is a swapped word takes the concept of its new word ("left" -> the id of
    "right"), or is dropped when the vocabulary has no such concept; a longer span that
    holds a swapped word is dropped (its concept may be the old side's)."""
    def moved(pos: int) -> int:
        # a word edited at p moves every position after its start: a span's start when the
        # word lies before it, its end also when the word is inside it
        return pos + sum(d for p, d, _ in edits if p < pos)

    out = []
    for start, end, cid in spans:
        inside = [(p, d, w) for p, d, w in edits if start <= p < end]
        if inside:
            if len(inside) != 1:
                continue
            p, d, word = inside[0]
            if p != start or end - start != len(word) - d or word not in concept_ids:
                continue
            cid = concept_ids[word]
        out.append([moved(start), moved(end), cid])
    return out


def flip_scene(scene: dict[str, Any]) -> dict[str, Any]:
    """The scene of the mirrored image: x mirrored in every box, left/right relations swapped."""
    out = copy.deepcopy(scene)
    for obj in out["objects"]:
        x0, y0, x1, y1 = obj["box"]
        obj["box"] = [round(1.0 - x1, 6), y0, round(1.0 - x0, 6), y1]
    rel = out.get("spec", {}).get("relation")
    if rel in _RELATION_FLIP:
        out["spec"]["relation"] = _RELATION_FLIP[rel]
    return out
