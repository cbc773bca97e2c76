"""Settings of the data loaders (``build_loader``); defaults are the single source of truth.

Light module (no torch, no DALI) so that training configs can embed ``DataConfig``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mamo.core.config import check

SPLITS = ("train", "eval")


@dataclass
class AugmentConfig:
    """Image augmentation. Crop windows and flips are drawn in Python from
    (seed, epoch, sample) so that DALI and the PyTorch fallback apply the very same ones and a
    resumed run repeats them exactly."""

    # RandomResizedCrop (train): area fraction and aspect-ratio range of the crop window
    # (ALBEF's pre-training setting).
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    # Horizontal flip probability. 0 by default: a flip turns "a red circle left of a blue
    # square" into an image whose caption is false (the synthetic data, and real captions
    # with "left"/"right", would teach the model wrong spatial words).
    hflip_prob: float = 0.0
    # Eval: centre square of side min(w, h) * fraction, resized to image_size (1.0 keeps the
    # whole shorter side, i.e. "resize shorter side + centre crop"; 0.875 = 224/256 style).
    eval_crop_fraction: float = 1.0

    def validate(self, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        lo, hi = self.crop_scale
        check(0.0 < lo <= hi <= 1.0, p + "crop_scale", f"needs 0 < min <= max <= 1, got {self.crop_scale}")
        lo, hi = self.crop_ratio
        check(0.0 < lo <= hi, p + "crop_ratio", f"needs 0 < min <= max, got {self.crop_ratio}")
        check(0.0 <= self.hflip_prob <= 1.0, p + "hflip_prob", f"must be in [0, 1], got {self.hflip_prob}")
        check(0.0 < self.eval_crop_fraction <= 1.0, p + "eval_crop_fraction",
              f"must be in (0, 1], got {self.eval_crop_fraction}")


@dataclass
class DataConfig:
    """Where the data is and how batches are made (docs/ARCHITECTURE.md section 3)."""

    # Dataset version directory (<root>/<dataset>/<version>, holds manifest.json). Required.
    version_dir: Path | None = None
    # Version used for split="eval"; None = the same version as training.
    eval_version_dir: Path | None = None
    # Concept vocabulary: "latest" follows concepts/LATEST; "none" = no concept labels
    # (all -100; for the MLM ablation or data without annotations).
    vocab_id: str = "latest"
    image_size: int = 256
    batch_size: int = 64
    # Caption length in WordPieces including [CLS]/[SEP] (base 40; the tiny preset ~24).
    max_text_len: int = 40
    label_pieces: Literal["all", "first"] = "all"
    # "auto": DALI when importable, else the PyTorch fallback.
    backend: Literal["auto", "dali", "torch"] = "auto"
    # JPEG decode for DALI: "mixed" = nvJPEG on the GPU, "cpu" = libjpeg-turbo; "auto" picks
    # mixed when CUDA is available.
    decode: Literal["auto", "cpu", "mixed"] = "auto"
    # CUDA device for decode="mixed"; None = torch.cuda.current_device().
    device_id: int | None = None
    num_threads: int = 2  # DALI CPU threads
    num_workers: int = 2  # DataLoader worker processes of the fallback (0 = in-process)
    # Shuffle (train): shard order is permuted per epoch, then samples pass through a
    # shuffle buffer of this many samples (>= dataset size = a full permutation).
    shuffle_buffer: int = 10000
    seed: int = 0
    # Train only: drop this rank's last partial batch. Eval always keeps it.
    drop_last: bool = True
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # ImageNet
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def validate(self, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        check(self.image_size >= 8, p + "image_size", f"must be >= 8, got {self.image_size}")
        check(self.batch_size >= 1, p + "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.max_text_len >= 2, p + "max_text_len", f"must be >= 2, got {self.max_text_len}")
        check(self.num_threads >= 1, p + "num_threads", f"must be >= 1, got {self.num_threads}")
        check(self.num_workers >= 0, p + "num_workers", f"must be >= 0, got {self.num_workers}")
        check(self.shuffle_buffer >= 1, p + "shuffle_buffer", f"must be >= 1, got {self.shuffle_buffer}")
        check(bool(self.vocab_id), p + "vocab_id", "must not be empty (use 'latest' or 'none')")
        check(all(s > 0 for s in self.std), p + "std", f"must be positive, got {self.std}")
        self.augment.validate(p + "augment")

    def version_for(self, split: str) -> Path:
        """The dataset version directory a split reads."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        path = self.eval_version_dir if (split == "eval" and self.eval_version_dir) else self.version_dir
        check(path is not None, "data.version_dir", "is required (a dataset version directory)")
        return Path(path)
