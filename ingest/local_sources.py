"""Local corpora: COCO captions JSON, Karpathy-split JSON, a folder of images + .txt captions.

Each (image, caption) pair is one input row. Images are checked and resized here with Pillow
using the same filters and resize modes as the download path. Duplicates are exact repeated
pairs (same image bytes and same caption): COCO-style data has several captions per image by
design, and each is a training pair.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .accounting import Accounting
from .captions import decode_caption, normalize_caption
from .config import IngestConfig
from .shards import iter_samples
from .version import VersionWriter, fingerprint, lock_version, sample_meta

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


@dataclass
class LocalRow:
    path: str  # relative to root (as given by the source)
    caption: Any
    extras: dict[str, Any] = field(default_factory=dict)


def coco_rows(json_path: str | Path) -> list[LocalRow]:
    """COCO captions (``captions_train2017.json``): one row per annotation, in file order."""
    data = json.loads(Path(json_path).read_text(encoding="utf-8"))
    images = {im["id"]: im for im in data.get("images", [])}
    rows = []
    for ann in data.get("annotations", []):
        im = images.get(ann.get("image_id"), {})
        rows.append(LocalRow(im.get("file_name", ""), ann.get("caption"),
                             {"image_id": ann.get("image_id"), "annotation_id": ann.get("id")}))
    return rows


def karpathy_rows(json_path: str | Path, splits: list[str] | None = None) -> list[LocalRow]:
    """Karpathy splits (``dataset_coco.json``, ``dataset_flickr30k.json``): one row per
    sentence of every image whose split is selected (all when ``splits`` is empty)."""
    data = json.loads(Path(json_path).read_text(encoding="utf-8"))
    rows = []
    for im in data.get("images", []):
        if splits and im.get("split") not in splits:
            continue
        rel = "/".join(p for p in (im.get("filepath", ""), im.get("filename", "")) if p)
        ident = {k: im[k] for k in ("cocoid", "imgid") if k in im}
        for sent in im.get("sentences", []):
            rows.append(LocalRow(rel, sent.get("raw"), {"split": im.get("split"), **ident,
                                                        "sentid": sent.get("sentid")}))
    return rows


def folder_rows(folder: str | Path) -> list[LocalRow]:
    """Every image file (recursively, sorted) with the caption in the same-stem ``.txt``."""
    root = Path(folder)
    rows = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            txt = p.with_suffix(".txt")
            cap = txt.read_bytes() if txt.is_file() else None
            rows.append(LocalRow(p.relative_to(root).as_posix(), cap))
    return rows


class ImageRejected(ValueError):
    def __init__(self, status: str, reason: str, detail: str = ""):
        self.status, self.reason = status, reason
        super().__init__(detail or reason)


def resize_image(img: Any, size: int, mode: str) -> Any:
    """Pillow version of img2dataset's resize modes (border pads with white)."""
    from PIL import Image

    w, h = img.size
    if mode == "no":
        return img
    if mode in ("keep_ratio", "center_crop"):
        s = size / min(w, h)
    else:  # border, keep_ratio_largest
        s = size / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC if s > 1 else Image.Resampling.BOX)
    if mode == "center_crop":
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    elif mode == "border":
        canvas = Image.new("RGB", (size, size), (255, 255, 255))
        canvas.paste(img, ((size - nw) // 2, (size - nh) // 2))
        img = canvas
    return img


def prepare_image(data: bytes, cfg: IngestConfig) -> tuple[bytes, int, int, int, int]:
    """Check and resize one image -> (jpeg, width, height, original_width, original_height)."""
    from PIL import Image

    f, d = cfg.filters, cfg.download
    try:
        img = Image.open(io.BytesIO(data))
        ow, oh = img.size
    except Image.DecompressionBombError as e:  # over twice Pillow's pixel limit
        raise ImageRejected("filtered", "image_too_large", str(e)) from e
    except Exception as e:  # noqa: BLE001
        raise ImageRejected("failed", "decode_error", f"{type(e).__name__}: {e}") from e
    if ow * oh > f.max_image_area:
        raise ImageRejected("filtered", "image_too_large", f"{ow}x{oh}")
    if min(ow, oh) < f.min_image_size:
        raise ImageRejected("filtered", "image_too_small", f"{ow}x{oh}")
    if max(ow, oh) / min(ow, oh) > f.max_aspect_ratio:
        raise ImageRejected("filtered", "aspect_ratio_too_large", f"{ow}x{oh}")
    try:
        img.load()
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            bg = Image.new("RGB", rgba.size, (255, 255, 255))
            bg.paste(rgba, mask=rgba.getchannel("A"))
            img = bg
        else:
            img = img.convert("RGB")
    except Exception as e:  # noqa: BLE001
        raise ImageRejected("failed", "decode_error", f"{type(e).__name__}: {e}") from e
    img = resize_image(img, d.image_size, d.resize_mode)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=d.encode_quality)
    return buf.getvalue(), img.width, img.height, ow, oh


def _resolve_inside(root: Path, rel: str) -> Path:
    p = (root / rel).resolve()
    if not rel or Path(rel).is_absolute() or not p.is_relative_to(root.resolve()):
        raise ImageRejected("failed", "unsafe_path", f"{rel!r} is not inside {root}")
    return p


def ingest_local(cfg: IngestConfig) -> dict[str, Any]:
    """Ingest a COCO / Karpathy / folder source into a dataset version."""
    src = cfg.source
    if src.kind == "coco":
        rows, root = coco_rows(src.path), Path(src.images_root or Path(src.path).parent)
    elif src.kind == "karpathy":
        rows = karpathy_rows(src.path, src.splits)
        root = Path(src.images_root or Path(src.path).parent)
    elif src.kind == "folder":
        rows, root = folder_rows(src.path), Path(src.path)
    else:
        raise ValueError(f"not a local source kind: {src.kind!r}")
    from mamo.core.config import to_dict

    source = {"kind": src.kind, "path": str(Path(src.path).resolve()), "images_root": str(root),
              "splits": list(src.splits), "rows": len(rows)}
    params = {"image_size": cfg.download.image_size, "resize_mode": cfg.download.resize_mode,
              "encode_quality": cfg.download.encode_quality, "filters": to_dict(cfg.filters),
              "samples_per_shard": cfg.samples_per_shard}
    rows_id = [(r.path, repr(r.caption)) for r in rows]  # a changed source is not resumed
    with lock_version(cfg.out, cfg.dataset, cfg.version):
        acc = Accounting(n_input=len(rows))
        writer = VersionWriter(cfg.out, cfg.dataset, cfg.version, cfg.samples_per_shard,
                               cfg.overwrite, acc, fingerprint=fingerprint(source, params, rows_id))
        try:
            _write_rows(cfg, rows, root, writer, acc)
        except BaseException:
            writer.abort()
            raise
        return writer.finish(source, params, acc)


def _write_rows(cfg: IngestConfig, rows: list[LocalRow], root: Path, writer: VersionWriter,
                acc: Accounting) -> None:
    """Rows from ``writer.resume_row`` on -> samples or accounted outcomes."""
    flt = cfg.filters
    # the dedup set of a resumed run: the pairs already in its finished shards
    seen: set[tuple[str, str]] = set()
    for shard in writer.shards:
        for sample in iter_samples(writer.dir / shard.tar, exts=("json",)):
            meta = json.loads(sample["json"])
            seen.add((meta["source_sha256"], meta["caption"]))
    start = writer.resume_row
    for i, r in enumerate(tqdm(rows[start:], desc=f"ingest {cfg.source.kind}", unit="pair",
                               disable=not cfg.progress), start=start):
        raw, problem = decode_caption(r.caption)
        if problem:
            acc.record(i, "filtered", problem, url=r.path)
            continue
        caption = normalize_caption(raw)
        if len(caption) < flt.min_caption_chars:
            acc.record(i, "filtered", "empty_caption", url=r.path)
            continue
        if len(caption) > flt.max_caption_chars:
            acc.record(i, "filtered", "caption_too_long", f"{len(caption)} characters",
                       url=r.path, caption=caption)
            continue
        try:
            path = _resolve_inside(root, r.path)
            if not path.is_file():
                raise ImageRejected("failed", "missing_file", str(path))
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if flt.dedup_images and (digest, caption) in seen:
                acc.record(i, "duplicate", "duplicate_pair", digest, url=r.path,
                           caption=caption)
                continue
            jpg, w, h, ow, oh = prepare_image(data, cfg)
        except ImageRejected as e:
            acc.record(i, e.status, e.reason, str(e), url=r.path, caption=caption)
            continue
        seen.add((digest, caption))
        key = f"r{i:09d}"
        meta = sample_meta(key, jpg, caption, w, h, ow, oh, source_path=r.path,
                           source_sha256=digest, row=i, **r.extras)
        writer.add(key, jpg, caption, meta, row=i)
        acc.written(i)
