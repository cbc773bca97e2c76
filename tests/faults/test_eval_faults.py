"""`python -m mamo.evaluate` meeting real faults: a truncated eval shard, a training still
writing the run dir, a read-only output dir, a disk that fills up while the report is written."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from fault_helpers import remount_ro, truncate
from train_helpers import REPO, TINY, env, run_cli

HOLD = ("import sys, time; from mamo.core.lock import exclusive\n"
        "with exclusive(sys.argv[1], sys.argv[2]):\n    print('held', flush=True); time.sleep(120)")


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("eval-run") / "run"
    r = run_cli(["-m", "mamo.train", "--config", "configs/tiny.yaml", "--run-dir", str(run_dir), "--no-progress",
                 f"data.version_dir={dataset}", *TINY, "train.steps=2"])
    assert r.returncode == 0, r.stderr[-3000:]
    return run_dir


def ev_args(run_dir, data, *extra):
    return ["-m", "mamo.evaluate", "--run-dir", str(run_dir), "--data", str(data), "--max-items", "16",
            "--examples", "2", "--k", "4", "--threads", "1", *extra]


def one_error_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def test_truncated_eval_shard_is_one_line_and_writes_nothing(trained, dataset_copy, tmp_path):
    shard = dataset_copy / "shards" / "00001.tar"
    truncate(shard, 0.6)
    out = tmp_path / "out"
    r = run_cli(ev_args(trained, dataset_copy, "--out", str(out)))
    assert r.returncode == 2, r.stderr[-3000:]
    line = one_error_line(r.stderr)
    assert str(shard) in line and "the manifest says" in line
    assert not out.exists()


def test_evaluation_while_training_holds_the_run_dir_exits_2_naming_it(trained, dataset, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), "training"], cwd=REPO, env=env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = run_cli(ev_args(run_dir, dataset))
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 2, r.stderr[-3000:]
    assert f"training by pid {holder.pid}" in one_error_line(r.stderr)
    assert not (run_dir / "results.json").exists()


def test_read_only_output_is_one_line_naming_the_stage_and_path(trained, dataset, tmpfs):
    out = tmpfs("1m")
    remount_ro(out)
    r = run_cli(ev_args(trained, dataset, "--out", str(out)))
    assert r.returncode == 2, r.stderr[-3000:]
    line = one_error_line(r.stderr)
    assert line.startswith("error: evaluation: cannot write") and str(out) in line
    assert "Read-only file system" in line


def test_disk_full_while_writing_the_report_leaves_no_index_html(trained, dataset, tmpfs):
    out = tmpfs("64k")  # results.json fits, the report's figures do not
    r = run_cli(ev_args(trained, dataset, "--out", str(out)))
    assert r.returncode == 2, r.stderr[-3000:]
    line = one_error_line(r.stderr)
    assert line.startswith("error: report: cannot write") and "No space left on device" in line
    assert (out / "results.json").is_file()
    assert not (out / "report" / "index.html").exists()  # the report's completion marker
