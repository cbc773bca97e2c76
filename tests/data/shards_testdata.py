"""Tiny dataset versions for the loader tests, written per docs/ARCHITECTURE.md section 1-2:
real WebDataset tars (tarfile), DALI index files (DALI's own wds2idx), a manifest, and
optionally a concept vocabulary with annotations."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from wds2idx import IndexCreator

SIZES = [(64, 48), (48, 64), (56, 56), (80, 40)]
WORDS = ["red", "blue", "green", "circle", "square", "triangle"]


def make_jpeg(i: int, size: tuple[int, int]) -> bytes:
    """A smooth picture (gradient + shapes), so decoders agree closely."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(1, w - 1)), (yy * 255 // max(1, h - 1)),
                     np.full_like(xx, (i * 37) % 256)], axis=-1).astype(np.uint8)
    img = Image.fromarray(base)
    d = ImageDraw.Draw(img)
    d.rectangle([w // 5, h // 5, w // 2, h // 2], fill=((i * 50) % 256, 30, 200))
    d.ellipse([w // 2, h // 3, w - 3, h - 3], fill=(250, (i * 90) % 256, 20))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def caption_of(i: int) -> str:
    return f"sample {i} a {WORDS[i % 3]} {WORDS[3 + (i // 3) % 3]}"


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = 0
    tf.addfile(ti, io.BytesIO(data))


def write_version(version_dir: Path, shard_sizes=(12, 8), *, corrupt=(), truncated=(), no_caption=(),
                  start: int = 0) -> dict[str, dict]:
    """Write shards of ``shard_sizes`` samples; returns {key: {"caption", "shard", "jpeg"}} of
    every sample written (including broken ones). Sample numbers listed in ``corrupt`` get
    garbage image bytes, ``truncated`` half a JPEG, ``no_caption`` no .txt member."""
    version_dir = Path(version_dir)
    (version_dir / "shards").mkdir(parents=True, exist_ok=True)
    truth: dict[str, dict] = {}
    shards = []
    i = start
    for s, n in enumerate(shard_sizes):
        stem = f"{s:05d}"
        tar_path = version_dir / "shards" / f"{stem}.tar"
        with tarfile.open(tar_path, "w") as tf:
            for _ in range(n):
                key = f"k{i:05d}"
                jpeg = make_jpeg(i, SIZES[i % len(SIZES)])
                if i in corrupt:
                    jpeg = b"\x00this is not a jpeg" * 20
                if i in truncated:
                    jpeg = jpeg[: len(jpeg) // 2]
                cap = caption_of(i)
                _add(tf, f"{key}.jpg", jpeg)
                if i not in no_caption:
                    _add(tf, f"{key}.txt", cap.encode())
                _add(tf, f"{key}.json", json.dumps({"key": key, "caption": cap}).encode())
                truth[key] = {"caption": cap, "shard": stem, "jpeg": jpeg, "number": i}
                i += 1
        with IndexCreator(str(tar_path), str(tar_path.with_suffix(".idx")), verbose=False) as ic:
            ic.create_index()
        shards.append({"tar": f"shards/{stem}.tar", "index": f"shards/{stem}.idx", "samples": n,
                       "bytes": tar_path.stat().st_size,
                       "sha256": hashlib.sha256(tar_path.read_bytes()).hexdigest()})
    total = sum(shard_sizes)
    manifest = {"format": "mamo-wds/1", "dataset": "test", "version": version_dir.name,
                "created": "2026-11-29T00:00:00+00:00", "software": {}, "source": {}, "params": {},
                "counts": {"input": total, "written": total, "failed": 0, "filtered": 0, "duplicate": 0},
                "shards": shards}
    (version_dir / "manifest.json").write_text(json.dumps(manifest))
    return truth


def write_concepts(version_dir: Path, truth: dict[str, dict], vocab_id: str = "vtest", omit=()) -> list[str]:
    """A vocabulary of WORDS and one annotation line per sample key (except ``omit``):
    every occurrence of a vocabulary word in the caption is a span."""
    root = Path(version_dir) / "concepts" / vocab_id
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "vocab.tsv").write_text("id\tconcept\tpos\tcount\n" +
                                    "".join(f"{i}\t{w}\tNOUN\t5\n" for i, w in enumerate(WORDS)))
    (root / "meta.json").write_text(json.dumps({"vocab_id": vocab_id}))
    lines: dict[str, list[str]] = {}
    for key, t in truth.items():
        if key in omit:
            continue
        cap = t["caption"]
        spans = []
        for cid, w in enumerate(WORDS):
            at = cap.find(w)
            if at >= 0:
                spans.append([at, at + len(w), cid])
        rec = {"key": key, "vocab_id": vocab_id, "caption_sha1": hashlib.sha1(cap.encode()).hexdigest(),
               "spans": sorted(spans)}
        lines.setdefault(t["shard"], []).append(json.dumps(rec))
    for stem, ls in lines.items():
        (root / "annotations" / f"{stem}.jsonl").write_text("\n".join(ls) + "\n")
    (Path(version_dir) / "concepts" / "LATEST").write_text(vocab_id + "\n")
    return WORDS


def tiny_cfg(vdir, **kw):
    from mamo.data import DataConfig

    base = dict(version_dir=vdir, image_size=32, batch_size=4, max_text_len=16, num_threads=1,
                num_workers=0, backend="dali", decode="cpu", seed=3, shuffle_buffer=6)
    base.update(kw)
    return DataConfig(**base)
