"""Images of downstream examples, by public file name, from shards or from a folder.

Synthetic task files name images the public way (``COCO_synth_<id>.jpg``, NLVR2
``...-img0.png``); ``image_map.json`` maps those names to shard keys, and the JPEG bytes are
read from the dataset version's shards (never copied out). Real data sets are a folder of
files (searched recursively once, so COCO's train2014/val2014 sub-folders work).

Pixels go through the same decode + normalisation as training batches
(``mamo.data.torch_fallback``): the whole image resized to a square (no crop, so normalised
boxes keep their meaning for grounding), then ImageNet mean/std.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ingest.shards import read_members_by_key
from mamo.data.torch_fallback import decode_pil, normalize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageStore:
    """``name -> encoded image bytes``; ``tensor(names, size)`` -> normalised ``[B, 3, S, S]``."""

    def __init__(self, blobs: dict[str, bytes] | None = None, files: dict[str, Path] | None = None,
                 where: str = ""):
        self._blobs = blobs or {}
        self._files = files or {}
        self.where = where
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    @classmethod
    def from_shards(cls, version_dir: str | Path, image_map: str | Path | dict[str, str]) -> "ImageStore":
        """Images of a dataset version's shards, under the public names of ``image_map``."""
        version_dir = Path(version_dir)
        if not isinstance(image_map, dict):
            image_map = json.loads(Path(image_map).read_text(encoding="utf-8"))
        wanted = set(image_map.values())
        by_key = read_members_by_key(version_dir, wanted, "jpg")
        missing = sorted(wanted - by_key.keys())
        if missing:
            raise KeyError(f"{version_dir}: {len(missing)} mapped keys have no image, e.g. {missing[0]!r}")
        # names share the bytes object of their key (several NLVR2 names point at one image)
        return cls(blobs={name: by_key[key] for name, key in image_map.items()}, where=str(version_dir))

    @classmethod
    def from_folder(cls, root: str | Path) -> "ImageStore":
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder not found: {root}")
        files = {p.name: p for p in root.rglob("*") if p.is_file()}
        return cls(files=files, where=str(root))

    def names(self) -> set[str]:
        return set(self._blobs) | set(self._files)

    def __contains__(self, name: str) -> bool:
        return name in self._blobs or name in self._files

    def bytes(self, name: str) -> bytes:
        if name in self._blobs:
            return self._blobs[name]
        if name in self._files:
            return self._files[name].read_bytes()
        raise KeyError(f"image {name!r} not found in {self.where}")

    def pil(self, name: str) -> Image.Image:
        return Image.open(io.BytesIO(self.bytes(name))).convert("RGB")

    def array(self, name: str, size: int) -> np.ndarray:
        """uint8 HWC of the whole image resized to size x size (cached: tiny synthetic sets)."""
        key = (name, size)
        if key not in self._cache:
            data = self.bytes(name)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
            self._cache[key] = decode_pil(data, (0, 0, w, h), False, size)
        return self._cache[key]

    def tensor(self, names: Sequence[str], size: int, mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
        arr = np.stack([self.array(n, size) for n in names])
        return normalize(torch.from_numpy(arr), tuple(mean), tuple(std))
