"""`python -m mamo.train` meeting real faults: a truncated/bit-flipped checkpoint, a damaged
shard, a second writer, a killed writer's stale lock, SIGINT, a full and a read-only disk."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from fault_helpers import flip_byte, remount_ro, truncate
from mamo.trainer.metrics import read_metrics
from train_helpers import REPO, TINY, env, run_cli

LOSS_KEYS = ("loss", "itc", "itm", "mmm")
pytestmark = pytest.mark.slow  # real training processes, ~2 min together on 2 busy cores


def args(dataset, run_dir, *extra, steps=6):
    return ["-m", "mamo.train", "--config", "configs/tiny.yaml", "--run-dir", str(run_dir), "--no-progress",
            f"data.version_dir={dataset}", *TINY, f"train.steps={steps}", "train.ckpt_every=3",
            "train.keep_last=2", *extra]


def one_error_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def six_steps(dataset, tmp_path_factory):
    """An uninterrupted run of 6 steps: checkpoints at 3 and 6, final/."""
    run_dir = tmp_path_factory.mktemp("six") / "run"
    r = run_cli(args(dataset, run_dir))
    assert r.returncode == 0, r.stderr[-3000:]
    return run_dir


def test_truncated_newest_checkpoint_falls_back_and_ends_identical(dataset, six_steps, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(six_steps, run_dir)
    truncate(run_dir / "checkpoints" / "step_0000006" / "model.safetensors")

    r = run_cli([*args(dataset, run_dir), "--check"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resume from" in r.stdout and "step_0000003" in r.stdout
    assert "step_0000006 is unusable" in r.stdout + r.stderr

    r = run_cli([*args(dataset, run_dir), "--resume"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "step_0000006" in r.stderr and "unusable" in r.stderr and "truncated" in r.stderr
    assert "resuming from" in r.stderr and "step_0000003" in r.stderr
    got, want = read_metrics(run_dir / "metrics.jsonl"), read_metrics(six_steps / "metrics.jsonl")
    assert [x["step"] for x in got] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(got, want):
        for k in (*LOSS_KEYS, "lr", "grad_norm"):
            assert a[k] == b[k], (a["step"], k)
    fa = load_file(str(run_dir / "final" / "model.safetensors"))
    fb = load_file(str(six_steps / "final" / "model.safetensors"))
    assert fa.keys() == fb.keys() and all((fa[k] == fb[k]).all() for k in fa)
    # the bad one was rewritten by the resumed run and now validates
    from mamo.trainer.checkpoint import validate
    validate(run_dir / "checkpoints" / "step_0000006")


def test_every_checkpoint_corrupt_is_one_line_and_exit_2(dataset, six_steps, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(six_steps, run_dir)
    truncate(run_dir / "checkpoints" / "step_0000006" / "model.safetensors")
    flip_byte(run_dir / "checkpoints" / "step_0000003" / "state.pt")  # same size: the digest tells
    for extra in (["--check"], ["--resume"]):
        r = run_cli([*args(dataset, run_dir), *extra])
        assert r.returncode == 2, r.stderr[-3000:]
        line = one_error_line(r.stderr)
        assert "no loadable checkpoint" in line and "step_0000006" in line and "step_0000003" in line
        assert "sha256 differs" in line


def test_truncated_shard_is_refused_before_step_1_or_left_out(dataset_copy, tmp_path):
    shard = dataset_copy / "shards" / "00001.tar"
    truncate(shard, 0.7)
    r = run_cli(args(dataset_copy, tmp_path / "a"))
    assert r.returncode == 2, r.stderr[-3000:]
    line = one_error_line(r.stderr)
    assert str(shard) in line and "the manifest says" in line
    assert not (tmp_path / "a").exists()  # nothing written

    r = run_cli(args(dataset_copy, tmp_path / "b", "data.on_corrupt=skip", steps=2))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "left out 1 corrupt shard" in r.stderr and "shards/00001.tar" in r.stderr
    dv = json.loads((tmp_path / "b" / "data_versions.json").read_text())
    assert [x["tar"] for x in dv["shards_left_out"]] == ["shards/00001.tar"] and dv["samples"] == 16


def test_bit_flipped_shard_needs_verify_full(dataset_copy, tmp_path):
    shard = dataset_copy / "shards" / "00000.tar"
    flip_byte(shard)
    r = run_cli([*args(dataset_copy, tmp_path / "a"), "--check"])
    assert r.returncode == 0, r.stderr[-3000:]  # the size check cannot see it (cheap by design)
    r = run_cli([*args(dataset_copy, tmp_path / "a", "data.verify=full"), "--check"])
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert str(shard) in line and "sha256" in line


def _popen(a):
    return subprocess.Popen([sys.executable, *a], cwd=REPO, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_step(proc, metrics, step=1):
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if metrics.is_file() and any(r["step"] >= step for r in read_metrics(metrics)):
            return
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.05)
    raise AssertionError("no step logged")


def test_second_writer_exits_2_naming_the_holder_then_a_stale_lock_is_taken_over(dataset, tmp_path):
    run_dir = tmp_path / "run"
    first = _popen(args(dataset, run_dir, steps=40))
    try:
        _wait_for_step(first, run_dir / "metrics.jsonl")
        r = run_cli(args(dataset, run_dir, steps=40))  # a double-submitted job
        assert r.returncode == 2, r.stderr[-3000:]
        line = one_error_line(r.stderr)
        assert f"training by pid {first.pid}" in line and str(run_dir) in line
        assert first.poll() is None  # the first one goes on, untouched
        _wait_for_step(first, run_dir / "metrics.jsonl", 4)
        first.send_signal(signal.SIGKILL)  # dies holding the lock
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert json.loads((run_dir / ".lock").read_text())["pid"] == first.pid
    r = run_cli(args(dataset, run_dir, steps=6))
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"stale lock of pid {first.pid}" in r.stderr and "resuming from" in r.stderr
    assert (run_dir / "final" / "model.safetensors").is_file()


def test_sigint_checkpoints_the_step_and_exits_130_then_resumes(dataset, tmp_path):
    run_dir = tmp_path / "run"
    proc = _popen(args(dataset, run_dir, steps=40))
    try:
        _wait_for_step(proc, run_dir / "metrics.jsonl")
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, err[-3000:]
    last = max(r["step"] for r in read_metrics(run_dir / "metrics.jsonl"))
    assert f"stopped by signal at step {last}" in err
    from mamo.trainer.checkpoint import validate
    validate(run_dir / "checkpoints" / f"step_{last:07d}")
    r = run_cli(args(dataset, run_dir, steps=last + 1))
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"step_{last:07d}" in r.stderr


def test_disk_full_while_checkpointing_is_one_line_and_keeps_no_half_checkpoint(dataset, tmpfs):
    run_dir = tmpfs("3m") / "run"  # config, metrics fit; the step-3 checkpoint does not
    r = run_cli(args(dataset, run_dir))
    assert r.returncode == 2, r.stderr[-3000:]
    line = one_error_line(r.stderr)
    assert line.startswith("error: training: cannot write") and "No space left on device" in line
    assert str(run_dir) in line
    from mamo.trainer.checkpoint import list_checkpoints
    assert list_checkpoints(run_dir) == []
    assert not any(p.name.startswith(".tmp_") for p in (run_dir / "checkpoints").iterdir())


def test_read_only_run_dir_is_one_line_and_changes_nothing(dataset, six_steps, tmpfs):
    mnt = tmpfs("512m")
    run_dir = mnt / "run"
    shutil.copytree(six_steps, run_dir)
    remount_ro(mnt)
    before = sorted(str(p) for p in run_dir.rglob("*"))
    r = run_cli(args(dataset, run_dir, steps=9))  # continue it: needs to write
    assert r.returncode == 2, r.stderr[-3000:]
    line = one_error_line(r.stderr)
    assert line.startswith("error: training: cannot write") and "Read-only file system" in line
    assert sorted(str(p) for p in run_dir.rglob("*")) == before
