"""Each task fine-tunes the real tiny model for a few steps on the synthetic set, evaluates,
and its saved checkpoint evaluates again to the same figures through ``evaluate_task``."""
import json
import subprocess
import sys

import pytest

from mamo.core.config import ConfigError, load_config
from mamo.downstream.config import FinetuneConfig
from mamo.evaluation.tasks import evaluate_task, headline
from mamo.finetune import finetune

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _cfg(task, synth_version, synth_tasks, out, **extra):
    overrides = [f"task={task}", f"data.tasks_dir={synth_tasks}", f"data.version_dir={synth_version}",
                 "optim.steps=3", "optim.batch_size=8", "optim.warmup_steps=1", "log_every=1",
                 f"out_dir={out}", "options.retrieval_k=4", "options.grounding_heatmaps=2",
                 *[f"{k}={v}" for k, v in extra.items()]]
    return load_config(FinetuneConfig, REPO / "configs" / "finetune" / f"{task}.yaml", overrides)


@pytest.mark.parametrize("task", ["vqa", "nlvr2", "retrieval", "grounding"])
def test_task_finetunes_and_evaluates(task, synth_version, synth_tasks, tmp_path):
    cfg = _cfg(task, synth_version, synth_tasks, tmp_path)
    res = finetune(cfg)
    out = tmp_path / task
    for name in ("model.safetensors", "task.json", "config.yaml", "metrics.jsonl", "results.json"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["loss"] == r["loss"] for r in rows)
    assert headline(res).startswith(task)
    if task == "vqa":
        assert 0 <= res["vqa_score"] <= 100 and res["n"] > 0 and res["baseline_majority"] > 0
        assert res["baseline_question_type_prior"] >= res["baseline_majority"]
        assert (out / "head.safetensors").is_file()
        assert set(res["by_answer_type"]) <= {"yes/no", "number", "other"}
    elif task == "nlvr2":
        assert 0 <= res["accuracy"] <= 100 and res["baseline_chance"] == 50.0
    elif task == "retrieval":
        assert {"tr@1", "ir@1", "r_mean"} <= res["itm_rerank"].keys() and "zero_shot" in res
        assert 0 <= res["r_mean"] <= 100
    else:
        assert 0 <= res["accuracy"] <= 100 and res["mean_proposals"] >= 2
        assert res["baseline_random_proposal"] > 0
        assert len(list((out / "heatmaps").glob("*.png"))) == 2
        assert len(list((out / "heatmaps_zero_shot").glob("*.png"))) == 2
    # the saved checkpoint gives the same figures
    again = evaluate_task(task, cfg, out)
    key = {"vqa": "vqa_score", "nlvr2": "accuracy", "retrieval": "r_mean", "grounding": "accuracy"}[task]
    assert again[key] == pytest.approx(res[key], abs=1e-6)


def test_vqa_needs_a_finetuned_checkpoint(synth_version, synth_tasks, tmp_path):
    cfg = _cfg("retrieval", synth_version, synth_tasks, tmp_path, **{"optim.steps": 1})
    finetune(cfg)
    with pytest.raises(ValueError, match="fine-tuned for 'retrieval', not 'vqa'"):
        evaluate_task("vqa", _cfg("vqa", synth_version, synth_tasks, tmp_path), tmp_path / "retrieval")


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="optim.batch_size"):
        load_config(FinetuneConfig, None, ["optim.batch_size=1"])
    with pytest.raises(ConfigError, match="task"):
        load_config(FinetuneConfig, None, ["task=captioning"])
    with pytest.raises(ConfigError, match="data.nope"):
        load_config(FinetuneConfig, None, ["data.nope=1"])


def test_clis_have_help():
    for mod in ("mamo.finetune", "mamo.evaluate", "mamo.downstream.synthetic_tasks"):
        r = subprocess.run([sys.executable, "-m", mod, "--help"], cwd=REPO, capture_output=True, text=True)
        assert r.returncode == 0 and "usage" in r.stdout, mod


def test_cli_errors_exit_2_with_a_message(synth_version, synth_tasks, tmp_path, capsys):
    from mamo.evaluate import main as eval_main
    from mamo.finetune import main as ft_main

    data = [f"data.version_dir={synth_version}", f"data.tasks_dir={synth_tasks}", f"out_dir={tmp_path}"]
    assert ft_main(["--task", "vqa", "--init", str(tmp_path / "missing"), *data]) == 2
    assert "no model.safetensors there" in capsys.readouterr().err
    assert ft_main(["--task", "vqa", "optim.lr=-1", *data]) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert eval_main(["--task", "nlvr2", "--checkpoint", str(tmp_path / "missing"), *data]) == 2


def test_stopped_finetune_continues_from_its_checkpoint(synth_version, synth_tasks, tmp_path, monkeypatch):
    """SIGTERM during fine-tuning: the step is checkpointed; the same call again continues and
    logs the steps, and ends with the figures, of an uninterrupted run (the shared trainer)."""
    import os
    import signal

    from mamo.downstream.tasks import nlvr2
    from mamo.trainer.trainer import TrainingStopped

    ref = finetune(_cfg("nlvr2", synth_version, synth_tasks, tmp_path / "ref"))
    real = nlvr2.training

    def training_stopped_at_step_2(ctx, model):
        task = real(ctx, model)
        step, calls = task.step, []

        def step_then_signal(idx, seed):
            calls.append(1)
            if len(calls) == 2:  # a scheduler's preemption, during step 2
                os.kill(os.getpid(), signal.SIGTERM)
            return step(idx, seed)

        task.step = step_then_signal
        return task

    monkeypatch.setattr(nlvr2, "training", training_stopped_at_step_2)
    cfg = _cfg("nlvr2", synth_version, synth_tasks, tmp_path / "run")
    with pytest.raises(TrainingStopped):
        finetune(cfg)
    out = tmp_path / "run" / "nlvr2"
    assert (out / "checkpoints" / "step_0000002" / "state.pt").is_file() and not (out / "results.json").exists()
    monkeypatch.setattr(nlvr2, "training", real)
    res = finetune(cfg)
    got = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    want = [json.loads(x) for x in (tmp_path / "ref" / "nlvr2" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in got] == [1, 2, 3]
    assert [(r["loss"], r["lr"]) for r in got] == [(r["loss"], r["lr"]) for r in want]
    assert res["accuracy"] == ref["accuracy"] and not (out / "checkpoints").exists()
