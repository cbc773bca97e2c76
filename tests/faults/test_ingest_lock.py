"""One writer per dataset version: a second ingest into a version being written exits 2 naming
the first (two real processes); the lock of a writer killed with SIGKILL is taken over with a
warning, and the rerun resumes its finished shards."""
import json

from pipeline_faults import cli, one_line_error, start, stats, wait_for

from ingest.manifest import load_manifest
from ingest.verify import verify_version


def test_second_ingest_is_refused_and_a_dead_holder_is_taken_over(tmp_path):
    args = ("ingest", "synthetic", "--out", str(tmp_path), "--n", "3000", "--image-size", "32",
            "--samples-per-shard", "50")
    vdir = tmp_path / "synthetic" / "v1"
    first = start(*args)
    try:
        wait_for(lambda: (vdir / "shards" / "00001.tar").exists(), first, "a second shard")
        second = cli(*args)
        assert second.returncode == 2, second.stderr
        line = one_line_error(second.stderr)
        assert f"ingest of synthetic/v1 by pid {first.pid}" in line and str(vdir) in line, line
        assert first.poll() is None, "the refused writer disturbed the first one"
    finally:
        first.kill()  # SIGKILL: the lock file keeps the dead pid; the kernel frees the flock
        first.wait()
    assert json.loads((vdir / ".lock").read_text())["pid"] == first.pid
    assert not (vdir / "manifest.json").exists()
    journaled = [json.loads(line)["shard"]["tar"] for line in
                 (vdir / "_work" / "shards.jsonl").read_text().splitlines()]
    kept = stats(vdir / t for t in journaled)
    third = cli(*args)
    assert third.returncode == 0, third.stderr
    assert f"taking over a stale lock of pid {first.pid}" in third.stderr
    assert stats(vdir / t for t in journaled) == kept  # finished shards were not rewritten
    m = load_manifest(vdir)
    assert m["counts"]["written"] == 3000 and len(m["shards"]) == 60
    assert verify_version(vdir, deep=False).ok
    assert json.loads(third.stdout)["counts"]["input"] == 3000
