"""Paired statistics of the ablation: mean ± std over seeds and a two-level bootstrap CI of
the difference between two variants.

A variant's readout is a matrix ``[seeds, items]`` of per-item scores (1 = correct, 0 =
wrong, NaN = the item has no score for that model, e.g. a word outside the concept
vocabulary). Two variants are paired twice: they were trained with the same seeds, and
they are scored on the same items. The bootstrap resamples seed indices (with replacement)
and, inside, item indices (with replacement), the SAME indices for both variants, so both
the seed-to-seed spread and the finite benchmark enter the interval, while what the two
variants share (a hard seed, a hard item) cancels in the difference.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def mean_std(values: list[float | None]) -> dict[str, float] | None:
    """``{mean, std, n}`` over the non-null values (std: sample, ddof=1; 0 for one value)."""
    a = np.asarray([v for v in values if v is not None], dtype=float)
    if a.size == 0:
        return None
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0, "n": int(a.size)}


def _common(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The per-item differences on the items every seed of both variants scored."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"paired readouts must be [seeds, items] of one shape, got {a.shape} and {b.shape}")
    keep = ~(np.isnan(a).any(0) | np.isnan(b).any(0))
    return (a - b)[:, keep]


def paired_bootstrap(a: Any, b: Any, n_boot: int = 2000, seed: int = 0, scale: float = 100.0,
                     ) -> dict[str, Any] | None:
    """``{"mean": x, "ci95": [lo, hi], "n_seeds", "n_items"}`` of ``mean(a) - mean(b)``
    (times ``scale``: percentage points for 0/1 scores); None without a common item.

    ``a``, ``b``: ``[seeds, items]``, row i of both from seed i, column j from item j.
    Deterministic given ``seed``."""
    d = _common(a, b)
    if d.size == 0:
        return None
    n_seeds, n_items = d.shape
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    # chunks of replicates: [chunk, seeds, items] gathers stay a few tens of MB
    chunk = max(1, 2_000_000 // max(1, n_seeds * n_items))
    for s in range(0, n_boot, chunk):
        m = min(chunk, n_boot - s)
        si = rng.integers(n_seeds, size=(m, n_seeds))
        ii = rng.integers(n_items, size=(m, n_items))
        stats[s : s + m] = d[si[:, :, None], ii[:, None, :]].mean(axis=(1, 2))
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return {"mean": float(scale * d.mean()), "ci95": [float(scale * lo), float(scale * hi)],
            "n_seeds": int(n_seeds), "n_items": int(n_items)}
