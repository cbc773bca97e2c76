"""COCO captions, Karpathy splits and folder sources; verify catches damaged versions."""
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ingest import synthetic as syn
from ingest.accounting import read_failures
from ingest.config import IngestConfig
from ingest.pipeline import run_ingest
from ingest.shards import read_shard
from ingest.verify import verify_version
from mamo.core.config import load_config

REPO = Path(__file__).resolve().parents[2]


def _cfg(tmp_path, kind, path, *extra):
    return load_config(IngestConfig, None, [
        f"out={tmp_path / 'out'}", f"dataset={kind}", "version=v1", f"source.kind={kind}",
        f"source.path={path}", "download.image_size=48", "samples_per_shard=3", "progress=false",
        *extra])


@pytest.fixture()
def images(tmp_path):
    d = tmp_path / "imgs"
    (d / "train").mkdir(parents=True)
    for i in range(3):
        syn.render_image(syn.generate_scene(1, i), 64).save(d / "train" / f"{i}.jpg")
    Image.new("RGBA", (100, 50), (0, 0, 255, 100)).save(d / "train" / "wide_alpha.png")
    (d / "secret.txt").write_text("outside")
    return d


def test_coco(tmp_path, images):
    coco = {"images": [{"id": i, "file_name": f"train/{i}.jpg"} for i in range(3)]
            + [{"id": 9, "file_name": "../secret.txt"}, {"id": 10, "file_name": "train/gone.jpg"}],
            "annotations": [
                {"id": 1, "image_id": 0, "caption": "A red  thing."},
                {"id": 2, "image_id": 0, "caption": "Another caption of image 0"},
                {"id": 3, "image_id": 0, "caption": "A red thing."},  # same pair again
                {"id": 4, "image_id": 1, "caption": "one"},
                {"id": 5, "image_id": 2, "caption": ""},
                {"id": 6, "image_id": 9, "caption": "escape attempt"},
                {"id": 7, "image_id": 10, "caption": "missing file"}]}
    p = images / "captions.json"
    p.write_text(json.dumps(coco))
    m = run_ingest(_cfg(tmp_path, "coco", p))
    assert m["counts"] == {"input": 7, "written": 3, "failed": 2, "filtered": 1, "duplicate": 1}
    assert m["reasons"] == {"failed": {"missing_file": 1, "unsafe_path": 1},
                            "filtered": {"empty_caption": 1}, "duplicate": {"duplicate_pair": 1}}
    vdir = tmp_path / "out" / "coco" / "v1"
    samples = [s for sh in m["shards"] for s in read_shard(vdir / sh["tar"])]
    assert [s["txt"] for s in samples] == ["A red thing.", "Another caption of image 0", "one"]
    assert samples[0]["json"]["annotation_id"] == 1 and samples[0]["json"]["source_path"] == "train/0.jpg"
    assert Image.open(io.BytesIO(samples[0]["jpg"])).size == (48, 48)
    assert verify_version(vdir).ok
    rows = {r["row"]: r["reason"] for r in read_failures(vdir / "failures.parquet")}
    assert rows == {2: "duplicate_pair", 4: "empty_caption", 5: "unsafe_path", 6: "missing_file"}


def test_karpathy_splits(tmp_path, images):
    k = {"dataset": "coco", "images": [
        {"filepath": "train", "filename": "0.jpg", "split": "train", "cocoid": 10,
         "sentences": [{"raw": "first", "sentid": 1}, {"raw": "second", "sentid": 2}]},
        {"filepath": "train", "filename": "1.jpg", "split": "test", "cocoid": 11,
         "sentences": [{"raw": "held out", "sentid": 3}]},
        {"filepath": "train", "filename": "wide_alpha.png", "split": "restval", "cocoid": 12,
         "sentences": [{"raw": "blue", "sentid": 4}]}]}
    p = images / "dataset_coco.json"
    p.write_text(json.dumps(k))
    m = run_ingest(_cfg(tmp_path, "karpathy", p, "source.splits=[train, restval]"))
    assert m["counts"]["input"] == 3 and m["counts"]["written"] == 3
    vdir = tmp_path / "out" / "karpathy" / "v1"
    samples = [s for sh in m["shards"] for s in read_shard(vdir / sh["tar"])]
    assert [(s["txt"], s["json"]["split"], s["json"]["cocoid"]) for s in samples] == [
        ("first", "train", 10), ("second", "train", 10), ("blue", "restval", 12)]
    # alpha composited on white, border mode pads the 2:1 image to a square
    blue = Image.open(io.BytesIO(samples[2]["jpg"]))
    assert blue.mode == "RGB" and blue.size == (48, 48)
    r, g, b = blue.getpixel((24, 24))
    assert b > 200 and r > 100 and abs(r - g) < 20  # half-transparent blue over white
    assert blue.getpixel((24, 2))[0] > 240  # the white border


def test_folder_and_verify_cli(tmp_path, images):
    (images / "train" / "0.txt").write_text("zero\n")
    (images / "train" / "1.txt").write_bytes(b"\xff\xfe bad")
    (images / "train" / "2.txt").write_text("two")
    m = run_ingest(_cfg(tmp_path, "folder", images / "train", "filters.min_image_size=60"))
    # wide_alpha.png has no caption file; 1.txt is invalid UTF-8
    assert m["counts"] == {"input": 4, "written": 2, "failed": 0, "filtered": 2, "duplicate": 0}
    assert m["reasons"]["filtered"] == {"invalid_utf8": 1, "missing_caption": 1}
    vdir = tmp_path / "out" / "folder" / "v1"

    def verify():
        return subprocess.run([sys.executable, "-m", "ingest", "verify", str(vdir)], cwd=REPO,
                              capture_output=True, text=True)

    r = verify()
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["samples"] == 2
    # a flipped byte inside the tar: checksum mismatch
    tar = vdir / m["shards"][0]["tar"]
    data = bytearray(tar.read_bytes())
    data[700] ^= 0xFF
    tar.write_bytes(bytes(data))
    r = verify()
    assert r.returncode == 1 and "sha256 mismatch" in r.stderr
    # a truncated tar: unreadable
    tar.write_bytes(bytes(data[:1500]))
    r = verify()
    assert r.returncode == 1 and "truncated" in r.stderr and "unreadable tar" in r.stderr
    # a missing manifest: not a complete version
    (vdir / "manifest.json").unlink()
    r = verify()
    assert r.returncode == 1 and "manifest" in r.stderr
