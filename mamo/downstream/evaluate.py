"""``python -m mamo.downstream.evaluate --task T --config C --checkpoint CK [a.b=c ...]``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mamo.downstream.config import TASKS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m mamo.downstream.evaluate",
        description="Evaluate a downstream task (retrieval, vqa, nlvr2, grounding) on the eval "
                    "split of its data; writes <out>/results_<task>.json.")
    ap.add_argument("--task", required=True, choices=TASKS)
    ap.add_argument("--config", default=None, help="configs/finetune/<task>.yaml (data section)")
    ap.add_argument("--checkpoint", required=True,
                    help="fine-tuned dir (python -m mamo.finetune), or for retrieval/grounding a "
                         "pre-trained run dir / model.safetensors (zero-shot)")
    ap.add_argument("--out", default=None, help="output folder (default: the checkpoint's folder)")
    ap.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. data.eval_split=val")
    args = ap.parse_args(argv)

    from mamo.core.config import ConfigError, load_config
    from mamo.downstream.config import FinetuneConfig
    from mamo.downstream.evaluate_task import evaluate_task, headline

    try:
        cfg = load_config(FinetuneConfig, args.config, [*args.overrides, f"task={args.task}"])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ck = Path(args.checkpoint)
    out = Path(args.out) if args.out else (ck if ck.is_dir() else ck.parent)
    try:
        results = evaluate_task(args.task, cfg, ck, out_dir=out)
    except (ValueError, FileNotFoundError, KeyError) as e:  # bad data files or checkpoint: say which
        print(f"error: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results_{args.task}.json").write_text(json.dumps(results, indent=1) + "\n")
    print(headline(results))
    print(f"[evaluate] results -> {out / f'results_{args.task}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
