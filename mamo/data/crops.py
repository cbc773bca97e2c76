"""Crop windows ``(x, y, width, height)`` in source pixels: the train split's random resized
crop (torchvision's rule) and the eval split's centred square. Pure functions of the image
size and a seeded generator, shared by both backends and by the caption-true crops."""
from __future__ import annotations

import math

import numpy as np


def random_resized_crop(w: int, h: int, scale: tuple[float, float], ratio: tuple[float, float],
                        rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A crop window with area fraction in ``scale`` and aspect ratio in ``ratio``
    (10 tries, then the largest centred window within the ratio range)."""
    area = w * h
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            x = int(rng.integers(0, w - cw + 1))
            y = int(rng.integers(0, h - ch + 1))
            return x, y, cw, ch
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, max(1, int(round(w / ratio[0])))
    elif in_ratio > ratio[1]:
        cw, ch = max(1, int(round(h * ratio[1]))), h
    else:
        cw, ch = w, h
    return (w - cw) // 2, (h - ch) // 2, cw, ch


def center_crop(w: int, h: int, fraction: float) -> tuple[int, int, int, int]:
    """Centred square of side min(w, h) * fraction (then resized: 'shorter side + centre crop')."""
    side = max(1, int(round(min(w, h) * fraction)))
    return (w - side) // 2, (h - side) // 2, side, side
