"""`python -m mamo.finetune` meeting real faults: Ctrl-C (SIGINT) mid-run, a second writer on
its output dir, a truncated shard of its image version."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

from fault_helpers import truncate
from mamo.trainer.metrics import read_metrics
from train_helpers import REPO, env, run_cli

HOLD = ("import sys, time; from mamo.core.lock import exclusive\n"
        "with exclusive(sys.argv[1], sys.argv[2]):\n    print('held', flush=True); time.sleep(120)")


def ft_args(version, tasks, out, steps=40):
    return ["-m", "mamo.finetune", "--task", "nlvr2", "--config", "configs/finetune/nlvr2.yaml",
            f"data.tasks_dir={tasks}", f"data.version_dir={version}", f"optim.steps={steps}",
            "optim.batch_size=8", "optim.warmup_steps=1", "log_every=1", f"out_dir={out}"]


def test_sigint_mid_finetune_checkpoints_and_the_next_call_continues(task_data, tmp_path):
    version, tasks = task_data
    out = tmp_path / "ft" / "nlvr2"
    proc = subprocess.Popen([sys.executable, *ft_args(version, tasks, tmp_path / "ft")], cwd=REPO, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not ((out / "metrics.jsonl").is_file() and read_metrics(out / "metrics.jsonl")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, err[-3000:]
    last = max(r["step"] for r in read_metrics(out / "metrics.jsonl"))
    assert (out / "checkpoints" / f"step_{last:07d}" / "state.pt").is_file()
    assert not (out / "results.json").exists()
    # the same state with its only checkpoint truncated: nothing to continue from, one line
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "ft", bad)
    truncate(bad / "nlvr2" / "checkpoints" / f"step_{last:07d}" / "model.safetensors")
    r = run_cli(ft_args(version, tasks, bad, steps=last + 1))
    assert r.returncode == 2, r.stderr[-3000:]
    errors = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and "no loadable checkpoint" in errors[0] and f"step_{last:07d}" in errors[0]

    r = run_cli(ft_args(version, tasks, tmp_path / "ft", steps=last + 1))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from" in r.stderr
    assert [x["step"] for x in read_metrics(out / "metrics.jsonl")] == list(range(1, last + 2))
    assert json.loads((out / "results.json").read_text())["steps"] == last + 1


def test_second_writer_on_the_output_dir_exits_2_naming_the_holder(task_data, tmp_path):
    version, tasks = task_data
    out = tmp_path / "ft" / "nlvr2"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), "fine-tuning"], cwd=REPO, env=env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = run_cli(ft_args(version, tasks, tmp_path / "ft", steps=2))
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 2, r.stderr[-3000:]
    errors = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and f"fine-tuning by pid {holder.pid}" in errors[0], r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing of its own written


def test_truncated_image_shard_is_one_line_before_any_work(task_data, tmp_path):
    version, tasks = task_data
    copy = tmp_path / "v1"
    shutil.copytree(version, copy)
    shard = sorted((copy / "shards").glob("*.tar"))[0]
    truncate(shard, 0.5)
    r = run_cli(ft_args(copy, tasks, tmp_path / "ft", steps=2))
    assert r.returncode == 2, r.stderr[-3000:]
    errors = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and str(shard) in errors[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "ft").exists()
