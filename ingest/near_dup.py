"""Near-duplicate images by a perceptual hash, and decontamination against held-out versions.

The hash is a 64-bit DCT hash (the classic pHash): grey 32x32, 2-D DCT-II, the 8x8 lowest
frequencies, one bit per coefficient above their median (the DC term left out of the median).
It is written here with numpy and Pillow because the ``imagehash`` package is not installed in
the project's environment (and this is 20 lines). Resizing, re-encoding and small colour
shifts move few bits; unrelated pictures differ in about half of them.

The hash is computed on luma, so it cannot tell a red circle from a blue one at the same
place (on the synthetic data 1 pair in ~3000 of different scenes is within distance 2). A
match therefore also needs the 8x8 RGB thumbnails to agree within ``COLOUR_TOLERANCE`` per
cell and channel: measured on 400 synthetic scenes, copies resized by 10% and re-encoded at
JPEG quality 60 differ by at most 12, the hash-close different scenes by 47 or more.

``HashIndex`` finds a stored hash within a Hamming distance: 8 bands of 8 bits, so any hash
within distance <= 7 shares at least one band exactly (pigeonhole); larger thresholds fall
back to a scan. Each sample's KEY.json stores ``phash`` (16 hex digits) and ``thumb`` (the
thumbnail, base64), so later versions compare against it without decoding.
"""
from __future__ import annotations

import base64
import io
from collections import defaultdict
from collections.abc import Iterable
from itertools import chain
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

HASH_SIZE = 8
SIDE = 32
COLOUR_TOLERANCE = 24  # max |difference| of an 8x8 RGB thumbnail cell, 0-255


@lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    n = np.arange(SIDE)
    m = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * SIDE))
    m[0] *= 1 / np.sqrt(2)
    return m * np.sqrt(2 / SIDE)


def phash(image: Any) -> int:
    """The 64-bit DCT hash of a PIL image or encoded image bytes."""
    from PIL import Image

    if isinstance(image, (bytes, bytearray)):
        with Image.open(io.BytesIO(image)) as im:
            return phash(im.convert("L"))
    grey = image.convert("L").resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    a = np.asarray(grey, dtype=np.float64)
    d = _dct_matrix()
    low = (d @ a @ d.T)[:HASH_SIZE, :HASH_SIZE].ravel()
    med = np.sort(low[1:])[31]  # the median of 63 values (np.median's overhead is 10x)
    # bit i = coefficient i above the median (little-endian bit order)
    return int.from_bytes(np.packbits(low > med, bitorder="little").tobytes(), "little")


def fingerprint(data: Any) -> tuple[int, bytes]:
    """(DCT hash, 8x8 RGB thumbnail as 192 bytes) of encoded image bytes or a PIL image."""
    from PIL import Image

    if isinstance(data, (bytes, bytearray)):
        with Image.open(io.BytesIO(data)) as im:
            return fingerprint(im.convert("RGB"))
    rgb = data.convert("RGB") if data.mode != "RGB" else data
    thumb = rgb.resize((8, 8), Image.Resampling.BOX).tobytes()
    return phash(rgb), thumb


def encode_thumb(t: bytes) -> str:
    return base64.b64encode(t).decode("ascii")


def hash_hex(h: int) -> str:
    return f"{h:016x}"


class HashIndex:
    """Hashes with a label each (the first copy's key); ``find`` the nearest within ``max_d``.

    Hashes and thumbnails live in growing numpy arrays, so ``find`` compares all candidates of
    a query at once: on synthetic scenes (plain backgrounds share hash bands) a query has
    ~130 candidates, and a Python loop over them cost as much as computing the hashes."""

    def __init__(self, max_distance: int):
        self.max_d = max_distance
        self.labels: list[str] = []
        self._hashes = np.empty(1024, np.uint64)
        self._thumbs = np.empty((1024, 192), np.uint8)
        self._bands: list[dict[int, list[int]]] = [defaultdict(list) for _ in range(8)]

    def __len__(self) -> int:
        return len(self.labels)

    def add(self, h: int, thumb: bytes, label: str) -> None:
        i = len(self.labels)
        if i == len(self._hashes):  # amortised doubling
            self._hashes = np.concatenate([self._hashes, np.empty_like(self._hashes)])
            self._thumbs = np.concatenate([self._thumbs, np.empty_like(self._thumbs)])
        self._hashes[i] = h
        self._thumbs[i] = np.frombuffer(thumb, np.uint8)
        self.labels.append(label)
        for b in range(8):
            self._bands[b][(h >> (8 * b)) & 0xFF].append(i)

    def find(self, h: int, thumb: bytes) -> tuple[str, int] | None:
        """(label, distance) of the closest stored hash within the threshold whose thumbnail
        agrees, or None; ties go to the earliest added."""
        n = len(self.labels)
        if self.max_d < 0 or n == 0:
            return None
        if self.max_d <= 7:
            cand = np.fromiter(chain.from_iterable(
                self._bands[b].get((h >> (8 * b)) & 0xFF, ()) for b in range(8)), np.intp)
        else:
            cand = np.arange(n)
        d = np.bitwise_count(self._hashes[cand] ^ np.uint64(h))
        keep = d <= self.max_d
        cand, d = cand[keep], d[keep]
        if cand.size:
            diff = self._thumbs[cand].astype(np.int16) - np.frombuffer(thumb, np.uint8)
            keep = np.abs(diff).max(axis=1) <= COLOUR_TOLERANCE
            cand, d = cand[keep], d[keep]
        if not cand.size:
            return None
        j = np.lexsort((cand, d))[0]
        return self.labels[int(cand[j])], int(d[j])


def version_hashes(vdir: str | Path) -> Iterable[tuple[str, int, bytes, str]]:
    """(key, phash, thumb, caption) of every sample of a version (stored in KEY.json by the
    download path; computed from the JPEG for versions from other sources)."""
    import json

    from .shards import iter_version_samples

    for s in iter_version_samples(vdir, exts=("jpg", "txt", "json")):
        meta = json.loads(s["json"]) if "json" in s else {}
        if isinstance(meta.get("phash"), str) and isinstance(meta.get("thumb"), str):
            h, t = int(meta["phash"], 16), base64.b64decode(meta["thumb"])
        else:
            h, t = fingerprint(s["jpg"])
        yield s["__key__"], h, t, s.get("txt", b"").decode("utf-8", "replace")


def earlier_versions(vdir: str | Path, before: float) -> list[Path]:
    """The dataset's versions completed before ``before`` (a time stamp: when this version
    was planned): siblings of ``vdir`` whose manifest is older."""
    vdir = Path(vdir).resolve()
    return sorted(p for p in vdir.parent.iterdir()
                  if p != vdir and p.is_dir() and (p / "manifest.json").is_file()
                  and (p / "manifest.json").stat().st_mtime < before)


def build_index(versions: Iterable[str | Path], max_distance: int
                ) -> tuple[HashIndex, dict[str, str]]:
    """An index over the images of ``versions`` (labels ``<version>/<key>``) and a map from
    caption to its first ``<version>/<key>``."""
    index, captions = HashIndex(max_distance), {}
    for v in versions:
        name = Path(v).name
        for key, h, t, cap in version_hashes(v):
            index.add(h, t, f"{name}/{key}")
            captions.setdefault(cap, f"{name}/{key}")
    return index, captions


def overlaps(vdir: str | Path, against: str | Path, max_distance: int = 6,
             captions: bool = False) -> list[dict[str, Any]]:
    """Samples of ``vdir`` whose image is within ``max_distance`` of one in ``against`` (or,
    with ``captions``, whose caption is identical): ``python -m ingest decontaminate``."""
    index, caps = build_index([against], max_distance)
    out = []
    for key, h, t, cap in version_hashes(vdir):
        hit = index.find(h, t)
        if hit is not None:
            out.append({"key": key, "match": hit[0], "distance": hit[1], "by": "image"})
        elif captions and cap in caps:
            out.append({"key": key, "match": caps[cap], "distance": None, "by": "caption"})
    return out
