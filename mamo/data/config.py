"""Settings of the data loaders (``build_loader``); defaults are the single source of truth.

Light module (no torch, no DALI) so that training configs can embed ``DataConfig``.
"""
from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from mamo.core.config import check, section

SPLITS = ("train", "eval")
Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]


@section
class AugmentConfig:
    """Image augmentation. Crop windows and flips are drawn in Python from
    (seed, epoch, sample) so that DALI and the PyTorch fallback apply the very same ones and a
    resumed run repeats them exactly."""

    # RandomResizedCrop (train): area fraction and aspect-ratio range of the crop window
    # (ALBEF's pre-training setting).
    crop_scale: tuple[Fraction, Fraction] = (0.5, 1.0)
    crop_ratio: tuple[Positive, Positive] = (3.0 / 4.0, 4.0 / 3.0)
    # Horizontal flip probability. 0 by default: on web data a flip turns "a dog left of a
    # cat" into an image whose caption is false. With caption_true, samples that carry their
    # scene get the caption swapped with the image (configs/tiny.yaml flips them).
    hflip_prob: Annotated[float, Field(ge=0, le=1)] = 0.0
    # Caption-true augmentation for samples whose JSON holds a synthetic scene (objects and
    # boxes; web samples are unaffected): crops keep every object at least `min_visible`
    # in view, and a flip swaps "left"/"right" in the caption (mamo/data/caption_true.py).
    caption_true: bool = True
    min_visible: Annotated[float, Field(gt=0, le=1)] = 0.8
    # Eval: centre square of side min(w, h) * fraction, resized to image_size (1.0 keeps the
    # whole shorter side, i.e. "resize shorter side + centre crop"; 0.875 = 224/256 style).
    eval_crop_fraction: Fraction = 1.0

    def __post_init__(self) -> None:
        for name in ("crop_scale", "crop_ratio"):
            lo, hi = getattr(self, name)
            check(lo <= hi, name, f"needs min <= max, got {getattr(self, name)}")


@section
class DataConfig:
    """Where the data is and how batches are made (docs/ARCHITECTURE.md section 3)."""

    # Dataset version directory (<root>/<dataset>/<version>, holds manifest.json). Required.
    version_dir: Path | None = None
    # Version used for split="eval"; None = the same version as training.
    eval_version_dir: Path | None = None
    # Concept vocabulary: "latest" follows concepts/LATEST; "none" = no concept labels
    # (all -100; for the MLM ablation or data without annotations). Never empty.
    vocab_id: Annotated[str, Field(min_length=1)] = "latest"
    image_size: Annotated[int, Field(ge=8)] = 256
    batch_size: Annotated[int, Field(ge=1)] = 64
    # Caption length in WordPieces including [CLS]/[SEP] (base 40; the tiny preset ~24).
    max_text_len: Annotated[int, Field(ge=2)] = 40
    label_pieces: Literal["all", "first"] = "all"
    # "auto": DALI when importable, else the PyTorch fallback.
    backend: Literal["auto", "dali", "torch"] = "auto"
    # JPEG decode for DALI: "mixed" = nvJPEG on the GPU, "cpu" = libjpeg-turbo; "auto" picks
    # mixed when CUDA is available.
    decode: Literal["auto", "cpu", "mixed"] = "auto"
    # CUDA device for decode="mixed"; None = torch.cuda.current_device().
    device_id: int | None = None
    num_threads: Annotated[int, Field(ge=1)] = 2  # DALI CPU threads
    # DataLoader worker processes of the fallback (0 = in-process)
    num_workers: Annotated[int, Field(ge=0)] = 2
    # Shuffle (train): shard order is permuted per epoch, then samples pass through a
    # shuffle buffer of this many samples (>= dataset size = a full permutation).
    shuffle_buffer: Annotated[int, Field(ge=1)] = 10000
    # Runs of this many consecutive samples of a shard are shuffled as one unit (kept
    # together, in order). 2 keeps relation twins (`ingest synthetic --twins`, samples 2k and
    # 2k+1) in one batch: with an even batch size each caption meets its swapped twin.
    shuffle_group: Annotated[int, Field(ge=1)] = 1
    seed: int = 0
    # Train only: drop this rank's last partial batch. Eval always keeps it.
    drop_last: bool = True
    # Before step 1, every shard is checked against the manifest: "size" (a stat per shard),
    # "full" (also its sha256: reads all the data once), "off".
    verify: Literal["size", "full", "off"] = "size"
    # A shard that fails the check: "fail" = one line naming it, exit 2; "skip" = leave it
    # out (counted and reported in the start line and data_versions.json).
    on_corrupt: Literal["fail", "skip"] = "fail"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # ImageNet
    std: tuple[Positive, Positive, Positive] = (0.229, 0.224, 0.225)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def version_for(self, split: str) -> Path:
        """The dataset version directory a split reads."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        path = self.eval_version_dir if (split == "eval" and self.eval_version_dir) else self.version_dir
        check(path is not None, "data.version_dir", "is required (a dataset version directory)")
        return Path(path)
