"""The embedded default data: images of simple objects with captions that state their
attributes, count or spatial relation, plus the full ground truth of every scene.

Everything is a pure function of ``(seed, index)``: sample ``i`` of seed ``s`` is the same
whatever ``n`` is, so a version can be regenerated, extended or resumed exactly.

Design for learnability by a tiny model at 64-96 px: four shapes and six colours that are far
apart in RGB, two sizes (the small one still ~17% of the image side), objects placed in the
cells of a 3x3 grid (never overlapping), on a dark, lightly textured background.

Scene schema (``KEY.json["synthetic"]``, see docs/ARCHITECTURE.md):
``{"seed", "index", "objects": [{"shape", "color", "size", "box": [x0, y0, x1, y1]}],
"spec": {"kind": "single"|"count"|"relation", ...}}`` with boxes normalised to [0, 1].

Relation twins (``twins`` > 0): samples ``2k`` and ``2k+1`` form a pair; with probability
``twins`` (drawn from ``(seed, 2k)``) sample ``2k+1`` is a copy of scene ``2k`` with one thing
changed so that its own caption is true of it and the pair's captions differ in one word: a
relation scene's two objects exchange grid cells (left of <-> right of, above <-> below), a count
scene gets another count (objects added in free cells or removed), a single scene's object the
other size. Both members then carry ``spec["twin_of"]`` (the partner's index, which may lie
beyond ``n`` for the last sample) and ``spec["twin_change"]`` (``left_right``, ``above_below``,
``count`` or ``size``, the names of the fine-grained change types), and share the background, so
that the change is the only difference. ``twins=0`` gives exactly the scenes without pairs.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Annotated, Any, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw
from pydantic import Field

from mamo.core.config import check, section

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "white")
SIZES: tuple[str, ...] = ("small", "large")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
# COUNT_WORDS[n] is the word for n; "count" scenes use n in 2..4.
COUNT_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four")
KINDS: tuple[str, ...] = ("single", "count", "relation")
OPPOSITE: dict[str, str] = {"left of": "right of", "right of": "left of", "above": "below",
                            "below": "above"}
# what a twin changes, named as the fine-grained benchmark names its change types
TWIN_CHANGES: tuple[str, ...] = ("left_right", "above_below", "count", "size")

PLURALS: dict[str, str] = {"circle": "circles", "square": "squares", "triangle": "triangles",
                           "cross": "crosses"}
RGB: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 50),
    "blue": (40, 90, 255),
    "yellow": (250, 230, 20),
    "purple": (170, 50, 220),
    "white": (245, 245, 245),
}
# Object side as a fraction of the image side; a grid cell is 1/3.
SIZE_FRACTION: dict[str, float] = {"small": 0.17, "large": 0.29}
GRID = 3
MIN_COUNT, MAX_COUNT = 2, 4
# How each relation reads in a caption (the vocabulary keeps the short form).
RELATION_PHRASE: dict[str, str] = {"left of": "to the left of", "right of": "to the right of",
                                   "above": "above", "below": "below"}


Weight = Annotated[float, Field(ge=0)]


@section
class SyntheticConfig:
    """Generation settings (also a section of the ingest config)."""

    n: Annotated[int, Field(ge=0)] = 2000
    seed: int = 0
    image_size: Annotated[int, Field(ge=16, le=1024)] = 96
    # relative frequency of the scene kinds single / count / relation
    kind_weights: tuple[Weight, Weight, Weight] = (1.0, 1.0, 1.0)
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 92
    # amplitude (0-255) of the background texture noise; 0 gives a plain background
    texture: Annotated[float, Field(ge=0, le=64)] = 10.0
    # share of sample pairs (2k, 2k+1) generated as twins: same objects, one relation, count
    # or size changed (see the module docstring); 0 gives no pairs
    twins: Annotated[float, Field(ge=0, le=1)] = 0.0

    def __post_init__(self) -> None:
        check(sum(self.kind_weights) > 0, "kind_weights", "must have a positive sum")


# ---------------------------------------------------------------------------- captions

def describe(obj: dict[str, Any]) -> str:
    """``"small red circle"``: the noun phrase of one object, without the article."""
    return f"{obj['size']} {obj['color']} {obj['shape']}"


def render_caption(scene: dict[str, Any]) -> str:
    """The caption of a scene, a pure function of ``objects`` and ``spec``.

    single: "a small red circle"; count: "three large blue squares";
    relation: "a small red circle to the left of a large green cross".
    """
    spec = scene["spec"]
    objects = scene["objects"]
    kind = spec["kind"]
    if kind == "single":
        return f"a {describe(objects[spec['object']])}"
    if kind == "count":
        obj = objects[spec["object"]]
        n = int(spec["count"])
        if n == 1:
            return f"one {describe(obj)}"
        return f"{COUNT_WORDS[n]} {obj['size']} {obj['color']} {PLURALS[obj['shape']]}"
    if kind == "relation":
        subj, other = objects[spec["subject"]], objects[spec["object"]]
        return f"a {describe(subj)} {RELATION_PHRASE[spec['relation']]} a {describe(other)}"
    raise ValueError(f"unknown scene kind {kind!r}")


def box_center(box: list[float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


def relation_holds(subject_box: list[float], object_box: list[float], relation: str) -> bool:
    """Is ``relation`` true of the boxes' centres (image y grows downwards)?"""
    (sx, sy), (ox, oy) = box_center(subject_box), box_center(object_box)
    return {"left of": sx < ox, "right of": sx > ox, "above": sy < oy, "below": sy > oy}[relation]


# ---------------------------------------------------------------------------- scenes

def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    # independent streams per (seed, index) so that sample i never depends on n
    return np.random.default_rng([int(seed), int(index), int(stream)])


def _box_in_cell(rng: np.random.Generator, col: int, row: int, size: str) -> list[float]:
    side = SIZE_FRACTION[size]
    cell = 1.0 / GRID
    slack = cell - side
    x0 = col * cell + rng.uniform(0.1 * slack, 0.9 * slack)
    y0 = row * cell + rng.uniform(0.1 * slack, 0.9 * slack)
    return [round(x0, 4), round(y0, 4), round(x0 + side, 4), round(y0 + side, 4)]


def _relation_cells(rng: np.random.Generator, relation: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two grid cells (col, row) where the relation clearly holds: the separation along the
    relation's axis is larger than along the other axis, so no other relation reads as true
    in the dominant direction."""
    pairs = []
    for sc in range(GRID):
        for sr in range(GRID):
            for oc in range(GRID):
                for orow in range(GRID):
                    dx, dy = oc - sc, orow - sr
                    if relation == "left of" and dx > 0 and abs(dy) < dx:
                        pairs.append(((sc, sr), (oc, orow)))
                    elif relation == "right of" and dx < 0 and abs(dy) < -dx:
                        pairs.append(((sc, sr), (oc, orow)))
                    elif relation == "above" and dy > 0 and abs(dx) < dy:
                        pairs.append(((sc, sr), (oc, orow)))
                    elif relation == "below" and dy < 0 and abs(dx) < -dy:
                        pairs.append(((sc, sr), (oc, orow)))
    return pairs[int(rng.integers(len(pairs)))]


def _random_object(rng: np.random.Generator) -> dict[str, Any]:
    return {"shape": SHAPES[int(rng.integers(len(SHAPES)))],
            "color": COLORS[int(rng.integers(len(COLORS)))],
            "size": SIZES[int(rng.integers(len(SIZES)))]}


def generate_scene(seed: int, index: int,
                   kind_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
                   twins: float = 0.0) -> dict[str, Any]:
    """The ground truth of sample ``index`` of seed ``seed`` (deterministic); with ``twins``
    > 0, a share of pairs ``(2k, 2k+1)`` are twins (module docstring)."""
    if twins > 0 and is_twin_pair(seed, index, twins):
        first = index - index % 2
        base = _base_scene(seed, first, kind_weights)
        scene = base if index == first else make_twin(base, index)
        spec = {k: v for k, v in scene["spec"].items() if k != "twin_change"}
        scene["spec"] = {**spec, "twin_of": first + 1 if index == first else first,
                         "twin_change": _twin_change(base)}
        return scene
    return _base_scene(seed, index, kind_weights)


def is_twin_pair(seed: int, index: int, twins: float) -> bool:
    """Is the pair holding ``index`` drawn as twins? (a pure function of the pair)"""
    # stream 2 of the pair's first index: streams 0 and 1 keep drawing exactly what they did
    return bool(_rng(seed, index - index % 2, 2).random() < twins)


def _base_scene(seed: int, index: int,
                kind_weights: tuple[float, float, float]) -> dict[str, Any]:
    rng = _rng(seed, index, 0)
    w = np.asarray(kind_weights, dtype=float)
    kind = KINDS[int(rng.choice(len(KINDS), p=w / w.sum()))]
    cells = [(c, r) for c in range(GRID) for r in range(GRID)]
    if kind == "single":
        obj = _random_object(rng)
        col, row = cells[int(rng.integers(len(cells)))]
        obj["box"] = _box_in_cell(rng, col, row, obj["size"])
        objects, spec = [obj], {"kind": "single", "object": 0}
    elif kind == "count":
        n = int(rng.integers(MIN_COUNT, MAX_COUNT + 1))
        proto = _random_object(rng)
        chosen = rng.choice(len(cells), size=n, replace=False)
        objects = []
        for ci in sorted(int(c) for c in chosen):
            col, row = cells[ci]
            objects.append({**proto, "box": _box_in_cell(rng, col, row, proto["size"])})
        spec = {"kind": "count", "object": 0, "count": n}
    else:
        relation = RELATIONS[int(rng.integers(len(RELATIONS)))]
        a = _random_object(rng)
        b = _random_object(rng)
        while describe(b) == describe(a):  # the two must be distinguishable in the caption
            b = _random_object(rng)
        (sc, sr), (oc, orow) = _relation_cells(rng, relation)
        a["box"] = _box_in_cell(rng, sc, sr, a["size"])
        b["box"] = _box_in_cell(rng, oc, orow, b["size"])
        objects, spec = [a, b], {"kind": "relation", "subject": 0, "relation": relation,
                                 "object": 1}
        assert relation_holds(a["box"], b["box"], relation)
    return {"seed": int(seed), "index": int(index), "objects": objects, "spec": spec}


def _cell_of(box: list[float]) -> tuple[int, int]:
    """The grid cell (col, row) a box was placed in (boxes never leave their cell)."""
    return int(box[0] * GRID), int(box[1] * GRID)


def _move_to_cell(box: list[float], cell: tuple[int, int]) -> list[float]:
    """The box translated by whole cells into ``cell`` (same offset inside the cell)."""
    (c0, r0), (c1, r1) = _cell_of(box), cell
    dx, dy = (c1 - c0) / GRID, (r1 - r0) / GRID
    return [round(box[0] + dx, 4), round(box[1] + dy, 4), round(box[2] + dx, 4),
            round(box[3] + dy, 4)]


def _resize_in_cell(box: list[float], size: str) -> list[float]:
    """The box at another size in the same cell, at the same relative place in the slack."""
    col, row = _cell_of(box)
    cell, side_old, side = 1.0 / GRID, box[2] - box[0], SIZE_FRACTION[size]
    out = []
    for origin, lo in ((col * cell, box[0]), (row * cell, box[1])):
        frac = (lo - origin) / (cell - side_old)
        out.append(round(origin + frac * (cell - side), 4))
    return [out[0], out[1], round(out[0] + side, 4), round(out[1] + side, 4)]


def _twin_change(scene: dict[str, Any]) -> str:
    spec = scene["spec"]
    if spec["kind"] == "relation":
        return "left_right" if spec["relation"] in ("left of", "right of") else "above_below"
    return "count" if spec["kind"] == "count" else "size"


def make_twin(scene: dict[str, Any], index: int) -> dict[str, Any]:
    """Scene ``scene`` with one change, as sample ``index`` (its caption true of its boxes).

    relation: the two objects exchange cells, so the opposite relation holds; count: another
    count in 2..4 (copies added in free cells or the last ones removed); single: the object
    at the other size in its cell. Random draws come from ``(seed, index)``, stream 2.
    """
    rng = _rng(scene["seed"], index, 2)
    objects = [dict(o) for o in scene["objects"]]
    spec = dict(scene["spec"])
    change = _twin_change(scene)
    if spec["kind"] == "relation":
        subj, obj = objects[spec["subject"]], objects[spec["object"]]
        s_cell, o_cell = _cell_of(subj["box"]), _cell_of(obj["box"])
        subj["box"], obj["box"] = _move_to_cell(subj["box"], o_cell), _move_to_cell(obj["box"], s_cell)
        spec["relation"] = OPPOSITE[spec["relation"]]
        assert relation_holds(subj["box"], obj["box"], spec["relation"])
    elif spec["kind"] == "count":
        old_n = int(spec["count"])
        new_n = int(rng.choice([n for n in range(MIN_COUNT, MAX_COUNT + 1) if n != old_n]))
        if new_n < old_n:
            objects = objects[:new_n]
        else:
            used = {_cell_of(o["box"]) for o in objects}
            free = [(c, r) for c in range(GRID) for r in range(GRID) if (c, r) not in used]
            proto = {k: objects[0][k] for k in ("shape", "color", "size")}
            for ci in sorted(int(c) for c in rng.choice(len(free), size=new_n - old_n, replace=False)):
                col, row = free[ci]
                objects.append({**proto, "box": _box_in_cell(rng, col, row, proto["size"])})
            # the order generate_scene uses: by cell
            objects.sort(key=lambda o: _cell_of(o["box"]))
        spec["count"] = new_n
    else:
        obj = objects[spec["object"]]
        obj["size"] = next(z for z in SIZES if z != obj["size"])
        obj["box"] = _resize_in_cell(obj["box"], obj["size"])
    spec["twin_change"] = change
    return {"seed": scene["seed"], "index": int(index), "objects": objects, "spec": spec}


def twin_pairs(scenes: Sequence[dict[str, Any]]) -> list[tuple[int, int, str]]:
    """``(i, j, twin_change)`` for each twin pair whose two members are both in ``scenes``
    (positions in the list, first member first), e.g. a version's ``KEY.json["synthetic"]``."""
    where = {(s["seed"], s["index"]): pos for pos, s in enumerate(scenes)}
    out = []
    for pos, s in enumerate(scenes):
        partner = s["spec"].get("twin_of")
        if partner is not None and s["index"] < partner and (s["seed"], partner) in where:
            out.append((pos, where[(s["seed"], partner)], s["spec"]["twin_change"]))
    return out


# ---------------------------------------------------------------------------- images

def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float],
                fill: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    elif shape == "cross":
        w, h = x1 - x0, y1 - y0
        t = 0.34  # bar thickness as a fraction of the side
        draw.rectangle((x0 + w * (0.5 - t / 2), y0, x0 + w * (0.5 + t / 2), y1), fill=fill)
        draw.rectangle((x0, y0 + h * (0.5 - t / 2), x1, y0 + h * (0.5 + t / 2)), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def render_image(scene: dict[str, Any], image_size: int = 96, texture: float = 10.0) -> Image.Image:
    """Draw a scene as an RGB image (antialiased by 2x supersampling). The background tone and
    texture come from the scene's (seed, index), so re-rendering is exact."""
    # twins share the pair's background: the change is then the only difference
    twin_of = scene["spec"].get("twin_of")
    bg_index = scene["index"] if twin_of is None else min(scene["index"], twin_of)
    rng = _rng(scene["seed"], bg_index, 1)
    ss = 2 * image_size
    tone = rng.integers(35, 80, size=3)
    bg = np.broadcast_to(tone.astype(np.float32), (ss // 8, ss // 8, 3)).copy()
    if texture > 0:
        bg += rng.normal(0.0, texture, size=bg.shape).astype(np.float32)
    bg_img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")
    img = bg_img.resize((ss, ss), Image.Resampling.BILINEAR)  # soft, low-frequency texture
    draw = ImageDraw.Draw(img)
    for obj in scene["objects"]:
        x0, y0, x1, y1 = (v * ss for v in obj["box"])
        _draw_shape(draw, obj["shape"], (x0, y0, x1, y1), RGB[obj["color"]])
    return img.resize((image_size, image_size), Image.Resampling.LANCZOS)


def encode_jpeg(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def sample_key(seed: int, index: int) -> str:
    return f"syn{seed}_{index:08d}"


@dataclass
class SyntheticSample:
    key: str
    jpg: bytes
    caption: str
    scene: dict[str, Any]
    width: int
    height: int


def make_sample(seed: int, index: int, image_size: int = 96,
                kind_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
                jpeg_quality: int = 92, texture: float = 10.0,
                twins: float = 0.0) -> SyntheticSample:
    scene = generate_scene(seed, index, kind_weights, twins)
    img = render_image(scene, image_size, texture)
    return SyntheticSample(key=sample_key(seed, index), jpg=encode_jpeg(img, jpeg_quality),
                           caption=render_caption(scene), scene=scene,
                           width=image_size, height=image_size)


def generate_samples(cfg: SyntheticConfig, start: int = 0,
                     stop: int | None = None) -> Iterator[SyntheticSample]:
    """Samples ``start..stop-1`` (default: all ``cfg.n``)."""
    stop = cfg.n if stop is None else stop
    for i in range(start, stop):
        yield make_sample(cfg.seed, i, cfg.image_size, tuple(cfg.kind_weights),
                          cfg.jpeg_quality, cfg.texture, cfg.twins)


def caption_vocabulary() -> list[str]:
    """Every word a synthetic caption can contain (for tests and concept checks)."""
    words = {"a", "one", "to", "the"} | set(COUNT_WORDS[1:]) | set(SIZES) | set(COLORS)
    words |= set(SHAPES) | set(PLURALS.values())
    for r in RELATION_PHRASE.values():
        words |= set(r.split())
    return sorted(words)


def grid_iou(a: list[float], b: list[float]) -> float:
    """IoU of two normalised boxes (useful for grounding checks)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


__all__ = [
    "SHAPES", "COLORS", "SIZES", "RELATIONS", "COUNT_WORDS", "KINDS", "RGB", "SyntheticConfig",
    "render_caption", "generate_scene", "render_image", "make_sample", "generate_samples",
    "relation_holds", "sample_key", "make_twin", "is_twin_pair", "twin_pairs", "TWIN_CHANGES", "OPPOSITE", "describe", "caption_vocabulary", "grid_iou", "encode_jpeg",
]
