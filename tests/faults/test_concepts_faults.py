"""Faults of ``python -m concepts build``, each for real: a second build of one dataset version
(two real processes), a build killed with SIGKILL (its lock taken over), SIGTERM and SIGINT
mid-build, a full disk (tmpfs) and a read-only version. Each ends with one line (or a clean
stop), leaves no staging or temp file and no new LATEST, and the rerun extracts only the
shards not finished before."""
import shutil
import signal

import pytest
from pipeline_faults import cli, fill, one_line_error, remount_readonly, start, stats, temp_files, tmpfs, wait_for

from concepts.store import read_latest
from ingest.synthetic import SyntheticConfig
from ingest.synthetic_version import write_synthetic_version


@pytest.fixture(scope="module")
def version(tmp_path_factory):
    root = tmp_path_factory.mktemp("concepts_faults")
    write_synthetic_version(root, "synthetic", "v1", SyntheticConfig(n=1600, seed=3, image_size=16),
                            samples_per_shard=20, progress=False)
    return root / "synthetic" / "v1"


def _copy(version, dst):
    shutil.copytree(version, dst)
    return dst


def _extracted(vdir):
    return sorted((vdir / "concepts" / "_extracted").glob("*/*.jsonl"))


def _build(vdir):
    return ("concepts", "build", str(vdir), "--quiet")


def _finished(vdir, first):
    """The rerun completed, LATEST set, and the files extracted before were not redone."""
    assert stats(first) == {k: v for k, v in stats(_extracted(vdir)).items() if k in stats(first)}
    assert len(_extracted(vdir)) == 80 and read_latest(vdir) is not None
    assert not temp_files(vdir), temp_files(vdir)


def test_second_build_is_refused_then_a_killed_holder_is_taken_over(version, tmp_path):
    vdir = _copy(version, tmp_path / "v1")
    first = start(*_build(vdir))
    lock = vdir / "concepts" / ".lock"
    try:
        # Extraction deduplicated across shards is over in a moment, so the holder is frozen
        # (alive, lock held) as soon as it has the lock, for the second build to meet it.
        wait_for(lambda: lock.exists() and str(first.pid) in lock.read_text(), first, "the lock")
        first.send_signal(signal.SIGSTOP)
        second = cli(*_build(vdir))
        assert second.returncode == 2, second.stderr
        line = one_line_error(second.stderr)
        assert f"concept build of {vdir} by pid {first.pid}" in line, line
    finally:
        first.kill()
        first.wait()
    done = _extracted(vdir)
    assert read_latest(vdir) is None
    third = cli(*_build(vdir))
    assert third.returncode == 0, third.stderr
    assert f"taking over a stale lock of pid {first.pid}" in third.stderr
    _finished(vdir, done)


@pytest.mark.parametrize("sig, rc", [(signal.SIGTERM, 143),
                                     pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)])
def test_signal_mid_build_then_resume(version, tmp_path, sig, rc):
    vdir = _copy(version, tmp_path / "v1")
    proc = start(*_build(vdir))
    wait_for(lambda: len(_extracted(vdir)) >= 2, proc, "two extracted shards")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == rc, err
    assert "Traceback" not in err and "rerun the same command to resume" in err, err
    done = _extracted(vdir)
    assert 2 <= len(done) < 80, "the signal did not land mid-build"
    assert read_latest(vdir) is None and not temp_files(vdir), temp_files(vdir)
    again = cli(*_build(vdir))
    assert again.returncode == 0, again.stderr
    _finished(vdir, done)


def test_disk_full_then_resume_after_freeing_space(version, tmp_path):
    with tmpfs(tmp_path / "disk", "8m") as disk:
        vdir = _copy(version, disk / "v1")
        filler = fill(disk, leave=120_000)
        r = cli(*_build(vdir))
        assert r.returncode == 2, r.stderr
        line = one_line_error(r.stderr)
        assert line.startswith("error: concepts build: No space left on device: "), line
        assert str(vdir / "concepts") in line, line
        assert read_latest(vdir) is None and not temp_files(vdir), temp_files(vdir)
        done = _extracted(vdir)
        assert done, "the disk was full before any shard"
        filler.unlink()
        again = cli(*_build(vdir))
        assert again.returncode == 0, again.stderr
        _finished(vdir, done)


def test_read_only_version(version, tmp_path):
    with tmpfs(tmp_path / "ro", "8m") as ro:
        vdir = _copy(version, ro / "v1")
        remount_readonly(ro)
        r = cli(*_build(vdir))
        assert r.returncode == 2, r.stderr
        line = one_line_error(r.stderr)
        assert line.startswith("error: concepts build: Read-only file system: "), line
        assert str(vdir / "concepts") in line, line
