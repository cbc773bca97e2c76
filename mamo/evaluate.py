"""``python -m mamo.evaluate``: zero-shot retrieval + fine-grained benchmark + HTML report.

    python -m mamo.evaluate --run-dir runs/demo/tiny
    python -m mamo.evaluate --checkpoint runs/x/final/model.safetensors --data data/synthetic/eval
    python -m mamo.evaluate --task vqa --config configs/finetune/vqa.yaml --checkpoint runs/finetune/vqa
        (downstream tasks: retrieval, vqa, nlvr2, grounding; see python -m mamo.downstream.evaluate)

Writes ``<out>/results.json`` and ``<out>/report/index.html`` (``<out>`` defaults to the run
directory) and prints the headline figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def find_run_dir(checkpoint: Path) -> Path | None:
    """The run directory above a checkpoint file/dir (the first parent holding config.yaml)."""
    for p in [checkpoint, *checkpoint.parents]:
        if (p / "config.yaml").is_file():
            return p
    return None


def load_model(config: Any, checkpoint: Path, device: str = "cpu") -> Any:
    """Build ``mamo.model.MAMO`` from a run config and load a safetensors state dict.

    The concept-head size comes from ``meta.json`` beside the weights (written by the
    trainer's export), else from the concept head's weight shape in the state dict.
    """
    import torch
    from safetensors.torch import load_file

    from mamo.model import MAMO

    weights = checkpoint / "model.safetensors" if checkpoint.is_dir() else checkpoint
    state = load_file(str(weights))
    meta_file = weights.parent / "meta.json"
    num_concepts = None
    if meta_file.is_file():
        num_concepts = json.loads(meta_file.read_text()).get("num_concepts")
    if num_concepts is None:
        num_concepts = _num_concepts(state)
    model = MAMO(config.model, config.loss, int(num_concepts or 0))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise RuntimeError(f"checkpoint {weights} lacks {len(missing)} tensors, e.g. {missing[:5]}")
    if unexpected:
        print(f"[evaluate] ignoring {len(unexpected)} unexpected tensors in {weights}", flush=True)
    return model.to(torch.device(device)).eval()


def _num_concepts(state: dict[str, Any]) -> int | None:
    for k, v in state.items():
        if "concept" in k and k.endswith("weight") and v.ndim == 2:
            return int(v.shape[0])
    return None


def evaluate(
    run_dir: str | Path | None = None,
    checkpoint: str | Path | None = None,
    data: str | Path | None = None,
    config_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    k: int = 16,
    max_items: int | None = 500,
    fg_seed: int = 0,
    n_examples: int = 8,
    device: str = "cpu",
    overrides: tuple[str, ...] = (),
    threads: int = 0,
) -> tuple[dict[str, Any], Path]:
    """Evaluate a run (or a checkpoint + data version); returns (results, report path)."""
    from concepts.tokenizer import load_tokenizer
    from mamo.evaluation.data import load_eval_set
    from mamo.evaluation.report import write_report
    from mamo.evaluation.runner import ModelScorer, run_evaluation
    from mamo.trainer.config import load_run_config

    if run_dir is None and checkpoint is None:
        raise ValueError("give a run directory or a checkpoint")
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        run_dir = Path(run_dir) if run_dir else find_run_dir(checkpoint)
    else:
        run_dir = Path(run_dir)  # type: ignore[arg-type]
        checkpoint = run_dir / "final" / "model.safetensors"
    if not checkpoint.exists():
        raise FileNotFoundError(f"no checkpoint at {checkpoint} (has training finished?)")
    if config_path is None:
        if run_dir is None or not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError("no config.yaml beside the checkpoint: pass --config")
        config_path = run_dir / "config.yaml"
    cfg = load_run_config(str(config_path), list(overrides))
    version = Path(data) if data else cfg.data.version_for("eval")
    out = Path(out_dir) if out_dir else (run_dir or checkpoint.parent)

    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    t0 = time.time()
    print(f"[evaluate] model {checkpoint}; data {version}", flush=True)
    model = load_model(cfg, checkpoint, device)
    image_size = cfg.model.vision.image_size
    evalset = load_eval_set(version, image_size, cfg.data.mean, cfg.data.std, max_items,
                            cfg.data.augment.eval_crop_fraction)
    scorer = ModelScorer(model, load_tokenizer(), cfg.data.max_text_len, device)
    results, examples = run_evaluation(scorer, evalset, k=k, fg_seed=fg_seed, n_examples=n_examples)
    results.update({"run": str(run_dir) if run_dir else "", "checkpoint": str(checkpoint),
                    "data": str(version), "eval_seconds": round(time.time() - t0, 1)})
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    config_text = Path(config_path).read_text(encoding="utf-8")
    metrics = (run_dir / "metrics.jsonl") if run_dir else None
    report = write_report(out / "report", results, metrics, examples, config_text,
                          title=f"MAMO run report: {run_dir.name if run_dir else checkpoint.name}")
    return results, report


def print_headline(results: dict[str, Any], report: Path | None = None) -> None:
    from mamo.evaluation.report import headline

    for name, v in headline(results).items():
        print(f"  {name:38s} {v:6.1f}")
    fg = results.get("finegrained", {}).get("itm")
    if fg:
        per = ", ".join(f"{c} {v:.0f}" for c, v in fg.items() if c not in ("overall", "n_items"))
        print(f"  fine-grained itm per change (%): {per}")
    if report:
        print(f"  report: {report}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--task" or a.startswith("--task=") for a in argv):
        # Downstream tasks (retrieval, vqa, nlvr2, grounding) have their own options.
        from mamo.downstream.evaluate import main as evaluate_task_main

        return evaluate_task_main(argv)
    p = argparse.ArgumentParser(prog="python -m mamo.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run-dir", help="a run directory (config.yaml, final/model.safetensors)")
    src.add_argument("--checkpoint", help="a model.safetensors file or a checkpoint directory")
    p.add_argument("--data", help="dataset version dir (default: the run's eval version)")
    p.add_argument("--config", help="run config.yaml (default: the one beside the checkpoint)")
    p.add_argument("--out", help="output directory (default: the run directory)")
    p.add_argument("--k", type=int, default=16, help="top-k re-ranked by ITM (default 16)")
    p.add_argument("--max-items", type=int, default=500, help="evaluate the first N samples (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fine-grained negatives")
    p.add_argument("--examples", type=int, default=8, help="images in the examples grid")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("overrides", nargs="*", help="dotted.key=value applied to the run config")
    a = p.parse_args(argv)
    results, report = evaluate(a.run_dir, a.checkpoint, a.data, a.config, a.out, a.k,
                               a.max_items or None, a.seed, a.examples, a.device, tuple(a.overrides),
                               a.threads)
    print_headline(results, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
