"""Reading one batch's raw samples: bytes, caption, and the augmentation drawn for each.

Shared by both backends so they see the same samples, skip the same bad ones and apply the
same crop windows and flips. Crops/flips come from a generator seeded by (seed, epoch,
sample id): independent of rank, world size, batch position and of resuming.
"""
from __future__ import annotations

import io
import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

from mamo.data.caption_true import caption_true_crop, flip_caption, scene_of
from mamo.data.crops import center_crop, random_resized_crop
from mamo.data.config import AugmentConfig
from mamo.data.index import SampleIndex, ShardFiles

# Reasons a sample is skipped; they are the keys counted in ``loader.stats``.
MISSING_IMAGE = "missing_image"
MISSING_CAPTION = "missing_caption"
CORRUPT_IMAGE = "corrupt_image"
# A shard that could not be read (gone, truncated or failing after the start checks).
READ_ERROR = "read_error"

JPEG_SOI = b"\xff\xd8\xff"
log = logging.getLogger(__name__)
_warned: set = set()  # shard paths whose read error was logged (once per process)


class CorruptImage(ValueError):
    pass


@dataclass
class RawBatch:
    batch_index: int
    samples: list[int] = field(default_factory=list)  # global sample ids that were kept
    keys: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    shards: list[int] = field(default_factory=list)
    jpegs: list[bytes] = field(default_factory=list)
    crops: list[tuple[int, int, int, int]] = field(default_factory=list)  # x, y, w, h in pixels
    flips: list[bool] = field(default_factory=list)
    # per sample, the caption's edits by a caption-true flip (caption_true.flip_caption)
    caption_edits: list[list[tuple[int, int, str]]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    # Text tensors when prepared ahead (DALI path, in the read thread), for ``text_keys``.
    text: dict | None = None
    text_keys: list[str] | None = None
    text_counts: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.samples)

    def drop(self, positions: set[int], reason: str) -> None:
        """Remove samples (by position in this batch) found bad after reading, e.g. at decode."""
        keep = [i for i in range(len(self.samples)) if i not in positions]
        for name in ("samples", "keys", "captions", "shards", "jpegs", "crops", "flips", "caption_edits"):
            values = getattr(self, name)
            setattr(self, name, [values[i] for i in keep])
        self.skipped[reason] += len(positions)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG header, without decoding; raises CorruptImage."""
    if not data.startswith(JPEG_SOI):
        raise CorruptImage("no JPEG start-of-image marker")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "JPEG":
                raise CorruptImage(f"not a JPEG ({img.format})")
            w, h = img.size
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise CorruptImage(str(e)) from e
    if w <= 0 or h <= 0:
        raise CorruptImage(f"bad size {w}x{h}")
    return w, h


def sample_rng(seed: int, epoch: int, sample: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, sample, 0xA06])


def read_raw_batch(index: SampleIndex, files: ShardFiles, sample_ids: np.ndarray, batch_index: int, *,
                   train: bool, seed: int, epoch: int, augment: AugmentConfig) -> RawBatch:
    """Read the members of ``sample_ids``; skip (and count) samples without an image, with an
    empty or undecodable caption, or whose bytes are not a JPEG."""
    out = RawBatch(batch_index=batch_index)
    for sid in sample_ids:
        sid = int(sid)
        shard = int(index.shard_of[sid])
        if index.image_size[sid] < 0:
            out.skipped[MISSING_IMAGE] += 1
            continue
        if index.caption_size[sid] <= 0:
            out.skipped[MISSING_CAPTION] += 1
            continue
        try:
            cap_bytes = files.read(shard, int(index.caption_offset[sid]), int(index.caption_size[sid]))
            jpeg = files.read(shard, int(index.image_offset[sid]), int(index.image_size[sid]))
        except OSError as e:  # a disk failing mid-run: skip and count, like a corrupt JPEG
            if index.shard_paths[shard] not in _warned:
                _warned.add(index.shard_paths[shard])
                log.warning("data: cannot read %s (%s); its samples are skipped and counted as %s",
                            index.shard_paths[shard], e, READ_ERROR)
            out.skipped[READ_ERROR] += 1
            continue
        try:
            caption = cap_bytes.decode("utf-8")
        except UnicodeDecodeError:
            caption = ""
        if not caption.strip():
            out.skipped[MISSING_CAPTION] += 1
            continue
        try:
            w, h = jpeg_size(jpeg)
        except CorruptImage:
            out.skipped[CORRUPT_IMAGE] += 1
            continue
        edits: list[tuple[int, int, str]] = []
        if train:
            rng = sample_rng(seed, epoch, sid)
            scene = _scene(index, files, shard, sid) if augment.caption_true else None
            if scene is None:
                crop = random_resized_crop(w, h, augment.crop_scale, augment.crop_ratio, rng)
            else:
                crop = caption_true_crop(w, h, scene, augment, rng)
            flip = bool(augment.hflip_prob > 0 and rng.random() < augment.hflip_prob)
            if flip and scene is not None:
                caption, edits = flip_caption(caption)
        else:
            crop, flip = center_crop(w, h, augment.eval_crop_fraction), False
        out.samples.append(sid)
        out.keys.append(index.keys[sid])
        out.captions.append(caption)
        out.shards.append(shard)
        out.jpegs.append(jpeg)
        out.crops.append(crop)
        out.flips.append(flip)
        out.caption_edits.append(edits)
    return out


def _scene(index: SampleIndex, files: ShardFiles, shard: int, sid: int) -> dict | None:
    if index.meta_size[sid] <= 0:
        return None
    try:
        return scene_of(files.read(shard, int(index.meta_offset[sid]), int(index.meta_size[sid])))
    except OSError:  # the image and caption were readable: train with plain augmentation
        return None
