"""Disk full (a real tmpfs) and a read-only output (a tmpfs remounted read-only) during
``python -m ingest``: one line naming the path and the stage, exit 2, no traceback, no temp
file, no manifest; after freeing space the rerun keeps the finished shards and ends with the
same version as a run that never failed."""
import json

from pipeline_faults import cli, fill, one_line_error, remount_readonly, stats, temp_files, tmpfs

from ingest.manifest import load_manifest
from ingest.verify import verify_version

ARGS = ("--n", "600", "--image-size", "32", "--samples-per-shard", "50")


def test_disk_full_then_resume_after_freeing_space(tmp_path):
    with tmpfs(tmp_path / "disk", "4m") as disk:
        filler = fill(disk, leave=900_000)  # room for a few of the ~2.5 MB of shards
        vdir = disk / "synthetic" / "v1"
        r = cli("ingest", "synthetic", "--out", str(disk), *ARGS)
        assert r.returncode == 2, r.stderr
        line = one_line_error(r.stderr)
        assert line.startswith("error: ingest synthetic: No space left on device: "), line
        assert str(vdir) in line, line
        assert not (vdir / "manifest.json").exists(), "a half-written version looks complete"
        assert not temp_files(vdir), temp_files(vdir)
        journal = vdir / "_work" / "shards.jsonl"
        done = [json.loads(x)["shard"]["tar"] for x in journal.read_text().splitlines()
                if x.endswith("}")]
        assert done, "no shard finished before the disk was full"
        kept = stats(vdir / t for t in done)

        filler.unlink()
        again = cli("ingest", "synthetic", "--out", str(disk), *ARGS)
        assert again.returncode == 0, again.stderr
        assert stats(vdir / t for t in done) == kept, "finished shards were written again"
        assert cli("ingest", "synthetic", "--out", str(tmp_path / "ref"), *ARGS).returncode == 0
        ref = load_manifest(tmp_path / "ref" / "synthetic" / "v1")
        m = load_manifest(vdir)
        assert [s["sha256"] for s in m["shards"]] == [s["sha256"] for s in ref["shards"]]
        assert m["counts"] == ref["counts"] == {"input": 600, "written": 600, "failed": 0,
                                                "filtered": 0, "duplicate": 0}
        assert verify_version(vdir).ok and not temp_files(disk)


def test_read_only_output(tmp_path):
    with tmpfs(tmp_path / "ro", "1m") as ro:
        remount_readonly(ro)
        r = cli("ingest", "synthetic", "--out", str(ro / "data"), *ARGS)
        assert r.returncode == 2, r.stderr
        line = one_line_error(r.stderr)
        assert line.startswith("error: ingest synthetic: Read-only file system: "), line
        assert str(ro / "data") in line, line


def test_local_source_disk_full_names_the_stage(tmp_path):
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    for i in range(200):
        Image.new("RGB", (32, 32), (i, 0, 0)).save(src / f"{i:03d}.png")
        (src / f"{i:03d}.txt").write_text(f"red square {i}", encoding="utf-8")
    with tmpfs(tmp_path / "disk", "2m") as disk:
        fill(disk, leave=150_000)
        r = cli("ingest", "local", f"out={disk}", "dataset=f", "version=v1", "source.kind=folder",
                f"source.path={src}", "samples_per_shard=20", "download.image_size=32",
                "progress=false")
        assert r.returncode == 2, r.stderr
        line = one_line_error(r.stderr)
        assert line.startswith("error: ingest local: No space left on device: "), line
        assert not (disk / "f" / "v1" / "manifest.json").exists()
        assert not temp_files(disk)
