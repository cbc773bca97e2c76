"""`torchrun -m mamo.finetune`: two processes (gloo, CPU) fine-tune under DDP, each on its
slice of every batch; both end with the same weights, rank 0 writes the outputs once."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["vqa", "retrieval"])  # a head; the model's own ITC/ITM losses
def test_two_process_finetune(task, synth_version, synth_tasks, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "mamo.finetune", "--task", task, "--config", f"configs/finetune/{task}.yaml",
                        f"data.tasks_dir={synth_tasks}", f"data.version_dir={synth_version}", "optim.steps=3",
                        "optim.batch_size=8", "optim.warmup_steps=1", "log_every=1", f"out_dir={tmp_path}",
                        "threads=1", "options.retrieval_k=4"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    out = tmp_path / task
    digests = json.loads((out / "rank_digests.json").read_text())
    assert len(digests) == 2 and digests[0] == digests[1]  # DDP kept the ranks identical
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows] == [1, 2, 3]
    results = json.loads((out / "results.json").read_text())
    assert ("vqa_score" in results and (out / "head.safetensors").is_file()) if task == "vqa" else "r_mean" in results
    assert r.stdout.count("[finetune] wrote") == 1  # rank 0 speaks for both
