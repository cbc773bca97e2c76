"""The evaluation set: images, captions and (for synthetic data) scenes of a dataset version.

Evaluation reads the version's samples with the shard reader (``ingest.shards``, in manifest
order) instead of the training loader: it needs members the batches do not carry (``KEY.json["synthetic"]`` for the
fine-grained benchmark, the JPEG for the examples grid), and it must not depend on concept
annotations existing for a held-out version. The image transform is the loader's eval
transform: centre square of side ``min(w, h) * crop_fraction``, resized to ``image_size``,
normalised with the given mean/std.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from ingest.shards import iter_version_samples


@dataclass
class EvalSet:
    keys: list[str]
    captions: list[str]
    images: torch.Tensor  # float32 [N, 3, H, W], normalised
    jpegs: list[bytes]
    scenes: list[dict[str, Any] | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)


def preprocess(img: Image.Image, image_size: int, mean: Sequence[float], std: Sequence[float],
               crop_fraction: float = 1.0) -> torch.Tensor:
    """Centre square crop, resize, normalise -> float32 [3, image_size, image_size]."""
    img = img.convert("RGB")
    w, h = img.size
    side = min(w, h) * crop_fraction
    left, top = (w - side) / 2.0, (h - side) / 2.0
    img = img.resize((image_size, image_size), Image.Resampling.BILINEAR,
                     box=(left, top, left + side, top + side))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


def _scene_of(meta: dict[str, Any]) -> dict[str, Any] | None:
    scene = meta.get("synthetic")
    if isinstance(scene, str):  # a column passed through img2dataset arrives as a JSON string
        try:
            scene = json.loads(scene)
        except json.JSONDecodeError:
            return None
    return scene if isinstance(scene, dict) and "objects" in scene and "spec" in scene else None


def iter_samples(version_dir: str | Path) -> Iterator[tuple[str, bytes, str, dict[str, Any]]]:
    """Yield ``(key, jpg_bytes, caption, meta)`` in manifest order (samples with an image and
    a caption; ``meta`` is ``{}`` without ``KEY.json``)."""
    for parts in iter_version_samples(version_dir, exts=("jpg", "txt", "json")):
        if "jpg" not in parts or "txt" not in parts:
            continue
        meta = json.loads(parts["json"].decode("utf-8")) if "json" in parts else {}
        yield parts["__key__"], parts["jpg"], parts["txt"].decode("utf-8").strip(), meta


def load_eval_set(version_dir: str | Path, image_size: int,
                  mean: Sequence[float] = (0.485, 0.456, 0.406),
                  std: Sequence[float] = (0.229, 0.224, 0.225),
                  max_items: int | None = None, crop_fraction: float = 1.0) -> EvalSet:
    """The first ``max_items`` samples of a version (all when None), preprocessed."""
    keys, caps, imgs, jpegs, scenes = [], [], [], [], []
    for key, jpg, caption, meta in iter_samples(version_dir):
        if max_items is not None and len(keys) >= max_items:
            break
        with Image.open(io.BytesIO(jpg)) as im:
            imgs.append(preprocess(im, image_size, mean, std, crop_fraction))
        keys.append(key)
        caps.append(caption)
        jpegs.append(jpg)
        scenes.append(_scene_of(meta))
    if not keys:
        raise ValueError(f"no samples in {version_dir}")
    return EvalSet(keys, caps, torch.stack(imgs), jpegs, scenes)
