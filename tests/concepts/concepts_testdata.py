"""Tiny dataset versions in the documented layout (manifest.json + WebDataset tars)."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

# a 1x1 JPEG is not needed: the concepts stage never reads images, but a shard has them
FAKE_JPG = b"\xff\xd8\xff\xe0" + b"\x00" * 16 + b"\xff\xd9"

CAPTIONS = [
    "Two dogs are running across a snowy field",
    "A red circle left of a blue square",
    "The geese are flying over the lake",
    "A dog sleeps on a red sofa",
    "Two dogs are running across a snowy field",
    "A small blue square above a large red circle",
    "Children are playing football in the park",
    "A dog and a cat on the grass",
]


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tf.addfile(info, io.BytesIO(data))


def make_version(root: Path, shards: list[list[bytes | str]], name: str = "v1") -> Path:
    """Write ``root/name`` with one tar per list of captions; returns the version dir."""
    vdir = Path(root) / name
    (vdir / "shards").mkdir(parents=True)
    entries, n = [], 0
    for si, caps in enumerate(shards):
        tar = vdir / "shards" / f"{si:05d}.tar"
        with tarfile.open(tar, "w", format=tarfile.USTAR_FORMAT) as tf:
            for cap in caps:
                key = f"s{si:02d}k{n:05d}"
                raw = cap.encode("utf-8") if isinstance(cap, str) else cap
                _add(tf, f"{key}.jpg", FAKE_JPG)
                _add(tf, f"{key}.txt", raw)
                _add(tf, f"{key}.json", json.dumps({"key": key}).encode())
                n += 1
        idx = tar.with_suffix(".idx")
        idx.write_text("")
        data = tar.read_bytes()
        entries.append({"tar": f"shards/{si:05d}.tar", "index": f"shards/{si:05d}.idx",
                        "samples": len(caps), "bytes": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()})
    manifest = {"format": "mamo-wds/1", "dataset": "test", "version": name,
                "created": "2026-11-29T00:00:00+00:00", "software": {"mamo": "0.1.0"},
                "source": {"kind": "test"}, "params": {},
                "counts": {"input": n, "written": n, "failed": 0, "filtered": 0, "duplicate": 0},
                "shards": entries}
    (vdir / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return vdir


def tree_bytes(path: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``path``."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(Path(path).rglob("*")) if p.is_file()}
