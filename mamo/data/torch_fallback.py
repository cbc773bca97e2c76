"""PyTorch fallback: shard bytes by offset + Pillow decode + a DataLoader of whole batches.

Used when DALI is not importable or ``backend="torch"``. It follows the same batch plan and
the same per-sample crops/flips as the DALI pipeline, so batches have the same structure,
dtype and normalisation (pixels agree within JPEG-decoder tolerance).
Each DataLoader item is one planned batch, so worker parallelism is across batches and the
batch order stays the plan's order.
"""
from __future__ import annotations

import io
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from mamo.data.config import AugmentConfig
from mamo.data.dali_pipeline import cpu_empty
from mamo.data.index import SampleIndex, ShardFiles
from mamo.data.samples import CORRUPT_IMAGE, RawBatch, read_raw_batch
from mamo.data.sharding import RankPlan


def decode_pil(jpeg: bytes, crop: tuple[int, int, int, int], flip: bool, size: int) -> np.ndarray:
    """JPEG -> crop window -> bilinear (antialiased) resize to size x size -> uint8 HWC RGB.
    EXIF orientation is not applied (neither does the DALI path; ingest writes upright images)."""
    with Image.open(io.BytesIO(jpeg)) as img:
        img.load()  # raises OSError on truncated data
        if img.mode != "RGB":
            img = img.convert("RGB")
        x, y, w, h = crop
        out = img.resize((size, size), Image.Resampling.BILINEAR, box=(x, y, x + w, y + h))
    if flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(out, dtype=np.uint8)


def normalize(images_nhwc: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
              shared: bool = False) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float32 [N, 3, H, W], (x / 255 - mean) / std.

    ``shared``: the result is written straight into shared memory, so that a DataLoader
    worker hands it to the main process without copying it there first.
    """
    n, h, w, _ = images_nhwc.shape
    out = cpu_empty((n, 3, h, w))  # contiguous NCHW, like DALI's output
    if shared:  # allocated in shared memory (as torch's default_collate does in workers)
        storage = torch.UntypedStorage._new_shared(out.nbytes)
        out = torch.empty(0, dtype=torch.float32).set_(storage, 0, (n, 3, h, w))
    out.copy_(images_nhwc.permute(0, 3, 1, 2))
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    return out.sub_(m).div_(s)


def decode_batch_pil(raw: RawBatch, size: int, mean, std) -> torch.Tensor:
    """Decode every sample of ``raw``; samples Pillow cannot decode are dropped and counted."""
    arrays, bad = [], set()
    for i, (jpeg, crop, flip) in enumerate(zip(raw.jpegs, raw.crops, raw.flips)):
        try:
            arrays.append(decode_pil(jpeg, crop, flip, size))
        except (OSError, ValueError, SyntaxError):
            bad.add(i)
    if bad:
        raw.drop(bad, CORRUPT_IMAGE)
    if not arrays:
        return torch.zeros((0, 3, size, size), dtype=torch.float32)
    in_worker = torch.utils.data.get_worker_info() is not None
    return normalize(torch.from_numpy(np.stack(arrays)), mean, std, shared=in_worker)


class PlannedBatches(torch.utils.data.Dataset):
    """Item i = planned batch ``first_batch + i``, read and decoded."""

    def __init__(self, index: SampleIndex, plan: RankPlan, first_batch: int, *, train: bool, seed: int,
                 epoch: int, augment: AugmentConfig, image_size: int, mean, std):
        self.index, self.plan, self.first_batch = index, plan, first_batch
        self.files = ShardFiles(index.shard_paths)
        self.train, self.seed, self.epoch, self.augment = train, seed, epoch, augment
        self.image_size, self.mean, self.std = image_size, tuple(mean), tuple(std)

    def __len__(self) -> int:
        return max(0, self.plan.num_batches - self.first_batch)

    def __getitem__(self, i: int) -> tuple[RawBatch, torch.Tensor]:
        b = self.first_batch + i
        raw = read_raw_batch(self.index, self.files, self.plan.batch(b), b, train=self.train,
                             seed=self.seed, epoch=self.epoch, augment=self.augment)
        images = decode_batch_pil(raw, self.image_size, self.mean, self.std)
        raw.jpegs = []  # do not ship the bytes back to the main process
        return raw, images


def _identity(x):
    return x


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # parallelism is across workers


def iter_fallback(dataset: PlannedBatches, num_workers: int) -> Iterator[tuple[RawBatch, torch.Tensor]]:
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=num_workers,
        collate_fn=_identity, worker_init_fn=_worker_init if num_workers else None,
        prefetch_factor=2 if num_workers else None, persistent_workers=False)
    yield from loader
