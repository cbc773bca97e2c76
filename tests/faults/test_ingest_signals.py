"""SIGTERM and SIGINT (real signals) during ``python -m ingest`` of the synthetic and of a
folder source: a non-zero exit with one line, finished shards kept, no temp file and no
manifest; the rerun redoes no finished shard and gives the same version as an uninterrupted run."""
import json
import signal

import pytest
from pipeline_faults import cli, start, stats, temp_files, wait_for

from ingest.manifest import load_manifest
from ingest.verify import verify_version

SYNTHETIC = ("--n", "3000", "--image-size", "32", "--samples-per-shard", "50")


def _synthetic(out):
    return ("ingest", "synthetic", "--out", str(out), *SYNTHETIC)


def _folder_source(root):
    from PIL import Image

    root.mkdir()
    for i in range(600):
        Image.new("RGB", (24 + i % 7, 24), (i % 256, (7 * i) % 256, 90)).save(root / f"im{i:04d}.png")
        (root / f"im{i:04d}.txt").write_text(f"a small picture number {i} – café ü", encoding="utf-8")
    return root


def _folder(out, src):
    return ("ingest", "local", f"out={out}", "dataset=folder", "version=v1", "source.kind=folder",
            f"source.path={src}", "samples_per_shard=20", "download.image_size=24",
            "filters.min_image_size=1", "progress=false")


def _shard_sums(vdir):
    return [(s["tar"], s["sha256"], s["samples"]) for s in load_manifest(vdir)["shards"]]


@pytest.mark.parametrize("sig, rc", [(signal.SIGTERM, 143),
                                     pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)])
@pytest.mark.parametrize("source", ["synthetic", "folder"])
def test_signal_mid_ingest_then_resume(tmp_path, source, sig, rc):
    if source == "synthetic":
        args, ref_args = _synthetic(tmp_path / "out"), _synthetic(tmp_path / "ref")
        vdir, ref = tmp_path / "out" / "synthetic" / "v1", tmp_path / "ref" / "synthetic" / "v1"
    else:
        src = _folder_source(tmp_path / "src")
        args, ref_args = _folder(tmp_path / "out", src), _folder(tmp_path / "ref", src)
        vdir, ref = tmp_path / "out" / "folder" / "v1", tmp_path / "ref" / "folder" / "v1"
    journal = vdir / "_work" / "shards.jsonl"
    proc = start(*args)
    wait_for(lambda: journal.is_file() and journal.read_text().count("\n") >= 2, proc,
             "two journaled shards")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == rc, err
    assert "Traceback" not in err and "rerun the same command to resume" in err, err
    assert not (vdir / "manifest.json").exists(), "an interrupted version looks complete"
    assert not temp_files(vdir), temp_files(vdir)
    done = [json.loads(line)["shard"]["tar"] for line in journal.read_text().splitlines()]
    assert len(done) >= 2
    kept = stats(vdir / t for t in done)

    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert stats(vdir / t for t in done) == kept, "finished shards were written again"
    assert cli(*ref_args).returncode == 0
    assert _shard_sums(vdir) == _shard_sums(ref)  # byte-identical to an uninterrupted run
    m, r = load_manifest(vdir), load_manifest(ref)
    assert m["counts"] == r["counts"] and m["reasons"] == r["reasons"]
    assert verify_version(vdir, deep=False).ok and not (vdir / "_work").exists()
