"""``python -m flows.ablation`` (also ``python -m mamo.ablation``): does full MAMO beat its parts
at the same training budget?

Variants (configs/ablation.yaml, each a list of dotted overrides of the training config):

  itc_itm      ITC + ITM only (no masked modelling)
  itc_itm_mlm  ITC + ITM + token-level MLM (masked text only, WordPiece targets)
  mamo         full MAMO: ITC + ITM + MMM (implicit + explicit visual + concept targets)

Each variant is trained for the same number of steps over several seeds (``train.seed`` and
``data.seed``), on the demo's data (prepared by the demo's stages if missing), then evaluated
on the held-out version. The table gives mean ± sample standard deviation over seeds, and
the min-max range (``mamo.evaluation.ablation``). Finished runs and evaluations are reused, so
an interrupted ablation continues where it stopped.

    python -m flows.ablation                        # configs/ablation.yaml
    python -m flows.ablation steps=50 seeds=[0,1]   # dotted overrides
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from flows.demo import DemoConfig, prepare_data
from flows.stages import REPO, Stamp, resolve, run_cli, stage_env, start_cli
from mamo.core.cli import UserError, parse_args, run
from mamo.core.config import check, load_config, section, to_dict
from mamo.core.files import write_json, write_text
from mamo.run_dir import RunDir

log = logging.getLogger(__name__)

@section
class AblationEval:
    k: int = 16
    max_items: int = 500
    seed: int = 0


@section
class AblationConfig:
    out: str = "runs/ablation"
    train_config: str = "configs/tiny.yaml"
    steps: Annotated[int, Field(ge=1)] = 400
    # distinct, at least one
    seeds: Annotated[list[int], Field(min_length=1)] = field(default_factory=lambda: [0, 1, 2])
    # overrides shared by every variant (e.g. batch size)
    common: list[str] = field(default_factory=list)
    # variant name -> its dotted.key=value overrides
    variants: dict[str, list[Annotated[str, Field(pattern="=")]]] = field(default_factory=dict)
    # the data: explicit version dirs, or (when empty) the demo's data stages with the
    # settings in `demo` (reused when already there)
    data_version: str = ""
    eval_version: str = ""
    demo: DemoConfig = field(default_factory=DemoConfig)
    # training runs at once (1 on a 2-core machine; more on a many-core/GPU machine)
    parallel: Annotated[int, Field(ge=1)] = 1
    device: str = "auto"  # for evaluation: auto = cuda when available
    threads: int = 1  # torch CPU threads of the evaluation (training: train.num_threads in common)
    eval: AblationEval = field(default_factory=AblationEval)

    def __post_init__(self) -> None:
        check(bool(self.data_version) == bool(self.eval_version), "eval_version",
              "give both data_version and eval_version, or neither")
        check(len(set(self.seeds)) == len(self.seeds), "seeds", "must be distinct")


def run_name(variant: str, seed: int) -> str:
    return f"{variant}_s{seed}"


def run_ablation(cfg: AblationConfig) -> dict[str, Any]:
    import torch

    from mamo.evaluation.runner import evaluate
    from mamo.evaluation.ablation import format_table, plot_loss_curves, plot_summary, summarize

    if not cfg.variants:
        raise UserError("no variants configured (configs/ablation.yaml: variants)")
    out = resolve(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.data_version:
        train_version, eval_version = Path(cfg.data_version).resolve(), Path(cfg.eval_version).resolve()
    else:
        print("=== data (the demo's stages 1-4, reused when done)", flush=True)
        train_version, eval_version = prepare_data(cfg.demo)
    env = stage_env(out)
    py = sys.executable
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.time()

    # 1. train every (variant, seed) not trained already with the same arguments
    jobs = []
    for variant, overrides in cfg.variants.items():
        for seed in cfg.seeds:
            run_dir = out / run_name(variant, seed)
            args = [*cfg.common, *overrides, f"train.seed={seed}", f"data.seed={seed}",
                    f"train.steps={cfg.steps}", f"data.version_dir={train_version}",
                    f"data.eval_version_dir={eval_version}"]
            stamp = Stamp(run_dir / "ablation_args.json", args)
            if stamp.matches() and RunDir(run_dir).final.weights.is_file():
                print(f"=== {variant} seed {seed}: trained already, reused", flush=True)
                continue
            jobs.append((variant, seed, run_dir, stamp))
    running: list[tuple[str, int, Path, Stamp, float, subprocess.Popen]] = []
    failed = []
    n_jobs = len(jobs)
    while jobs or running:
        while jobs and len(running) < cfg.parallel:
            variant, seed, run_dir, stamp = jobs.pop(0)
            if run_dir.exists():
                shutil.rmtree(run_dir)  # a stale run dir would be resumed, not retrained
            run_dir.mkdir(parents=True)
            print(f"=== train {variant} seed {seed} ({n_jobs - len(jobs)}/{n_jobs}, "
                  f"{time.time() - t0:.0f} s elapsed)", flush=True)
            cmd = [py, "-m", "mamo.train", "--config", cfg.train_config, "--run-dir", str(run_dir),
                   "--no-progress", *stamp.params]
            started = time.time()
            if cfg.parallel == 1:
                run_cli(cmd, env=env)
                stamp.write(round(time.time() - started, 1))
                continue
            proc = start_cli(cmd, out / f"{run_name(variant, seed)}.log", env)
            running.append((variant, seed, run_dir, stamp, started, proc))
        for job in list(running):
            variant, seed, run_dir, stamp, started, proc = job
            if proc.poll() is None:
                continue
            running.remove(job)
            if proc.returncode == 0:
                stamp.write(round(time.time() - started, 1))
                print(f"--- {variant} seed {seed} trained ({time.time() - t0:.0f} s elapsed)", flush=True)
            else:
                failed.append(run_name(variant, seed))
                log.error("%s seed %s failed (exit %s); see %s", variant, seed, proc.returncode,
                          out / f"{run_name(variant, seed)}.log")
        if running:
            time.sleep(2)
    if failed:
        raise UserError(f"training failed for {failed}")

    # 2. evaluate each run on the held-out version (reused when newer than the weights)
    all_results: dict[str, list[dict[str, Any]]] = {}
    for variant in cfg.variants:
        all_results[variant] = []
        for seed in cfg.seeds:
            rd = RunDir(out / run_name(variant, seed))
            final, res_file = rd.final.weights, rd.results
            print(f"=== evaluate {variant} seed {seed} ({time.time() - t0:.0f} s elapsed)", flush=True)
            if not (res_file.is_file() and res_file.stat().st_mtime >= final.stat().st_mtime):
                evaluate(run_dir=rd.path, data=eval_version, k=cfg.eval.k, max_items=cfg.eval.max_items,
                         fg_seed=cfg.eval.seed, n_examples=4, device=device, threads=cfg.threads)
            res = json.loads(res_file.read_text())
            all_results[variant].append(res)
            fg = res.get("finegrained", {}).get("itm", {}).get("overall", float("nan"))
            print(f"    FG ITM overall {fg:.1f}  retrieval ITM R@mean "
                  f"{res['retrieval']['itm_rerank']['r_mean']:.1f}", flush=True)

    summary = summarize(all_results)
    table = format_table(summary)
    write_json(out / "summary.json", {"config": to_dict(cfg), "summary": summary,
                                      "runs": {v: [r.get("finegrained", {}) for r in rs]
                                               for v, rs in all_results.items()}})
    write_text(out / "summary.md", format_table(summary, markdown=True) + "\n")
    plot_summary(summary, out / "ablation.png")
    plot_loss_curves({v: [RunDir(out / run_name(v, seed)).metrics for seed in cfg.seeds] for v in cfg.variants},
                     out / "losses.png")
    print(f"\n=== ablation: {cfg.steps} steps x {len(cfg.seeds)} seeds per variant; "
          f"mean ± std [min-max] over seeds ({time.time() - t0:.0f} s)\n{table}\n\n"
          f"written: {out / 'summary.md'}, {out / 'ablation.png'}, {out / 'losses.png'}")
    return {"summary": summary, "table": table, "out": str(out)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flows.ablation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs" / "ablation.yaml"))
    p.add_argument("overrides", nargs="*", help="dotted.key=value, e.g. steps=50 seeds=[0,1]")

    def ablation() -> None:
        a = parse_args(p, argv)
        run_ablation(load_config(AblationConfig, a.config, a.overrides))

    return run(ablation)


if __name__ == "__main__":
    sys.exit(main())
