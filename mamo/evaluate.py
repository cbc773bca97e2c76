"""``python -m mamo.evaluate``: evaluate a pre-trained model, or a downstream task with ``--task``.

Pre-training evaluation (zero-shot retrieval + fine-grained benchmark + HTML report):
    python -m mamo.evaluate --run-dir runs/demo/tiny
    python -m mamo.evaluate --checkpoint runs/x/final/model.safetensors --data data/synthetic/eval
  writes <out>/results.json and <out>/report/index.html (<out> defaults to the run directory)
  and prints the headline figures. The fine-grained readouts (ITM/ITC benchmark, linear
  probes, masked-word scoring) can run on their own, larger synthetic version:
    python -m mamo.evaluate --run-dir runs/demo/tiny --fg-data data/synthetic/fg --items-per-type 2000

Downstream tasks (retrieval, vqa, nlvr2, grounding) on the eval split of their data:
    python -m mamo.evaluate --task vqa --config configs/finetune/vqa.yaml --checkpoint runs/finetune/vqa
  --checkpoint: a fine-tuned dir (python -m mamo.finetune), or for retrieval/grounding a
  pre-trained run dir / model.safetensors (zero-shot); writes <out>/results_<task>.json.

Dotted overrides (a.b=c) apply to the run config, or with --task to the fine-tuning config.
The library is mamo.evaluation (runner.evaluate, tasks.evaluate_task).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mamo.core.cli import UserError, parse_args, run
from mamo.downstream.config import TASKS

log = logging.getLogger("mamo.evaluate")
# Options of the pre-training evaluation only (with their defaults); --task refuses them.
PRETRAIN_DEFAULTS = {"data": None, "k": 16, "max_items": 500, "seed": 0, "examples": 8, "device": "cpu",
                     "threads": 0, "fg_data": None, "items_per_type": 0, "probe_train_share": 0.5,
                     "fg_max_images": 0}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mamo.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run-dir", help="a run directory (config.yaml, final/model.safetensors)")
    src.add_argument("--checkpoint", help="a checkpoint directory or its model.safetensors; with --task, "
                                          "a fine-tuned dir")
    p.add_argument("--task", choices=TASKS, help="evaluate this downstream task instead")
    p.add_argument("--config", help="run config.yaml (default: the checkpoint's); with --task, "
                                    "configs/finetune/<task>.yaml")
    p.add_argument("--out", help="output directory (default: the run / checkpoint directory)")
    g = p.add_argument_group("pre-training evaluation (not with --task)")
    g.add_argument("--data", help="dataset version dir (default: the run's eval version)")
    g.add_argument("--k", type=int, help="top-k re-ranked by ITM (default 16)")
    g.add_argument("--max-items", type=int, help="evaluate the first N samples (default 500; 0 = all)")
    g.add_argument("--seed", type=int, help="seed of the fine-grained negatives (default 0)")
    g.add_argument("--examples", type=int, help="images in the examples grid (default 8)")
    g.add_argument("--device", help="cpu (default), cuda, ...")
    g.add_argument("--threads", type=int, help="torch CPU threads (default 0 = torch's default)")
    g.add_argument("--fg-data", help="a synthetic version for the fine-grained readouts (benchmark, "
                                     "probes, masked words; default: the eval data's own scenes)")
    g.add_argument("--items-per-type", type=int, help="fine-grained items per change type (default 0 = all)")
    g.add_argument("--probe-train-share", type=float,
                   help="share of the fine-grained images that train the linear probes (default 0.5)")
    g.add_argument("--fg-max-images", type=int, help="read at most N images of --fg-data (default 0 = all)")
    p.set_defaults(overrides=[])
    return p


def evaluate_pretraining(a: argparse.Namespace) -> int:
    from mamo.evaluation.report import print_headline
    from mamo.evaluation.runner import FineGrained, evaluate

    o = {k: (PRETRAIN_DEFAULTS[k] if getattr(a, k) is None else getattr(a, k)) for k in PRETRAIN_DEFAULTS}
    if not 0.0 < o["probe_train_share"] < 1.0:
        raise UserError(f"--probe-train-share must be in (0, 1), got {o['probe_train_share']}")
    fg = FineGrained(o["fg_data"], o["items_per_type"] or None, o["probe_train_share"], o["fg_max_images"] or None)
    results, report = evaluate(a.run_dir, a.checkpoint, o["data"], a.config, a.out, o["k"],
                               o["max_items"] or None, o["seed"], o["examples"], o["device"],
                               tuple(a.overrides), o["threads"], fg)
    print_headline(results, report)
    return 0


def evaluate_downstream(a: argparse.Namespace) -> int:
    from mamo.core.config import load_config
    from mamo.core.files import disk_errors, write_json
    from mamo.core.lock import check_free, exclusive
    from mamo.data.index import require_intact
    from mamo.downstream.config import FinetuneConfig
    from mamo.evaluation.tasks import evaluate_task, headline

    cfg = load_config(FinetuneConfig, a.config, [*a.overrides, f"task={a.task}"])
    ck = Path(a.checkpoint or a.run_dir)
    out = Path(a.out) if a.out else (ck if ck.is_dir() else ck.parent)
    check_free(out)  # a fine-tuning writing there now: refused before the work
    if cfg.data.version_dir is not None:
        require_intact(cfg.data.version_dir)
    try:
        with disk_errors("evaluation", out):  # grounding writes heat maps
            results = evaluate_task(a.task, cfg, ck, out_dir=out)
    except (ValueError, KeyError) as e:  # bad data files or checkpoint: say which
        raise UserError(str(e)) from e
    with disk_errors("evaluation", out), exclusive(out, "evaluation"):
        path = write_json(out / f"results_{a.task}.json", results, indent=1)
    print(headline(results))
    log.info("results -> %s", path)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0, or 2 with one ``error: ...`` line for a bad option, config or input."""
    parser = build_parser()
    a = parse_args(parser, argv)
    if a.task:
        given = [k for k in PRETRAIN_DEFAULTS if getattr(a, k) is not None]
        if given:
            parser.error(f"--{given[0].replace('_', '-')} is an option of the pre-training evaluation, "
                         "not of --task")
        return run(lambda: evaluate_downstream(a))
    return run(lambda: evaluate_pretraining(a))


if __name__ == "__main__":
    sys.exit(main())
