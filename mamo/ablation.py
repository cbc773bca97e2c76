"""``python -m mamo.ablation``: does full MAMO beat its parts at the same training budget?

Variants (configs/ablation.yaml, each a list of dotted overrides of the training config):

  itc_itm      ITC + ITM only (no masked modelling)
  itc_itm_mlm  ITC + ITM + token-level MLM (masked text only, WordPiece targets)
  mamo         full MAMO: ITC + ITM + MMM (implicit + explicit visual + concept targets)

Each variant is trained for the same number of steps over several seeds (``train.seed`` and
``data.seed``), on the demo's data (prepared by the demo's stages if missing), then evaluated
on the held-out version. The table gives mean ± sample standard deviation over seeds, and
the min-max range. Finished runs and evaluations are reused, so an interrupted ablation
continues where it stopped.

    python -m mamo.ablation                        # configs/ablation.yaml
    python -m mamo.ablation steps=50 seeds=[0,1]   # dotted overrides
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from mamo.core.config import check, load_config, section, to_dict
from mamo.demo import REPO, DemoConfig, _sub, prepare_data, quiet_env

# The rows of the side-by-side table: (results path, label).
ROWS: tuple[tuple[str, str], ...] = (
    ("finegrained.itm.overall", "FG ITM overall"),
    ("finegrained.itm.color", "FG ITM color"),
    ("finegrained.itm.shape", "FG ITM shape"),
    ("finegrained.itm.size", "FG ITM size"),
    ("finegrained.itm.count", "FG ITM count"),
    ("finegrained.itm.left_right", "FG ITM left/right"),
    ("finegrained.itm.above_below", "FG ITM above/below"),
    ("finegrained.itc.overall", "FG ITC overall"),
    ("retrieval.itm_rerank.r_mean", "Ret ITM R@mean"),
    ("retrieval.itm_rerank.tr@1", "Ret ITM TR@1"),
    ("retrieval.itm_rerank.ir@1", "Ret ITM IR@1"),
    ("retrieval.itc.r_mean", "Ret ITC R@mean"),
)


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


def _get(d: dict[str, Any], path: str) -> float | None:
    # paths split on "." but metric names contain "@" only, so a plain split is safe
    node: Any = d
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) else None


def summarize(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{variant: {row_label: {mean, std, min, max, n}}}`` over seeds (std: sample, ddof=1)."""
    import numpy as np

    out: dict[str, dict[str, dict[str, float]]] = {}
    for variant, runs in results.items():
        out[variant] = {}
        for path, label in ROWS:
            vals = [v for v in (_get(r, path) for r in runs) if v is not None]
            if not vals:
                continue
            a = np.asarray(vals, dtype=float)
            out[variant][label] = {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
                                   "min": float(a.min()), "max": float(a.max()), "n": float(a.size)}
    return out


def format_table(summary: dict[str, dict[str, dict[str, float]]], markdown: bool = False) -> str:
    variants = list(summary)
    labels = [label for _, label in ROWS if any(label in summary[v] for v in variants)]

    def cell(v: str, label: str) -> str:
        s = summary[v].get(label)
        if not s:
            return "-"
        return f"{s['mean']:.1f} ± {s['std']:.1f} [{s['min']:.0f}-{s['max']:.0f}]"

    if markdown:
        lines = ["| metric (%) | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
        lines += [f"| {label} | " + " | ".join(cell(v, label) for v in variants) + " |" for label in labels]
        return "\n".join(lines)
    w = 26
    lines = ["metric (%)".ljust(22) + "".join(v.rjust(w) for v in variants)]
    lines += [label.ljust(22) + "".join(cell(v, label).rjust(w) for v in variants) for label in labels]
    return "\n".join(lines)


def plot_summary(summary: dict[str, dict[str, dict[str, float]]], out_png: Path) -> None:
    """Bars with the seed spread (std) as error bars, and every seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    variants = list(summary)
    labels = [label for _, label in ROWS if all(label in summary[v] for v in variants)]
    if not labels:
        return
    fig, ax = plt.subplots(figsize=(max(8, 1.0 * len(labels) * len(variants) / 2), 4))
    width = 0.8 / len(variants)
    x = np.arange(len(labels))
    for i, v in enumerate(variants):
        means = [summary[v][lab]["mean"] for lab in labels]
        stds = [summary[v][lab]["std"] for lab in labels]
        ax.bar(x + (i - (len(variants) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=v)
    ax.axhline(50, color="gray", ls="--", lw=0.8)
    ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("%  (mean ± std over seeds)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)


def plot_loss_curves(out: Path, variants: list[str], seeds: list[int], out_png: Path) -> None:
    """Shared loss terms (total, ITC, ITM) per variant, mean over seeds, smoothed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from mamo.evaluation.report import read_metrics

    terms = ("loss", "itc", "itm")
    fig, axes = plt.subplots(1, len(terms), figsize=(4.2 * len(terms), 3))
    for v in variants:
        curves = {t: [] for t in terms}
        for seed in seeds:
            rows = read_metrics(out / f"{v}_s{seed}" / "metrics.jsonl")
            for t in terms:
                ys = [r[t] for r in rows if isinstance(r.get(t), (int, float))]
                if ys:
                    curves[t].append(ys)
        for ax, t in zip(axes, terms):
            if not curves[t]:
                continue
            n = min(len(c) for c in curves[t])
            y = np.mean([c[:n] for c in curves[t]], axis=0)
            w = max(1, n // 40)
            y = np.convolve(y, np.ones(w) / w, mode="valid")
            ax.plot(np.arange(len(y)) + w // 2 + 1, y, label=v)
    for ax, t in zip(axes, terms):
        ax.set_title(t if t != "loss" else "total loss (different objectives!)")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)


def _launch(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    print("$ " + " ".join(cmd) + f"  > {log}", flush=True)
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def run_ablation(cfg: AblationConfig) -> dict[str, Any]:
    import torch

    from mamo.evaluate import evaluate

    if not cfg.variants:
        raise SystemExit("no variants configured (configs/ablation.yaml: variants)")
    out = (REPO / cfg.out) if not Path(cfg.out).is_absolute() else Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.data_version:
        train_version, eval_version = Path(cfg.data_version).resolve(), Path(cfg.eval_version).resolve()
    else:
        print("=== data (the demo's stages 1-4, reused when done)", flush=True)
        train_version, eval_version = prepare_data(cfg.demo)
    env = quiet_env(out)
    py = sys.executable
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.time()

    # 1. train every (variant, seed) not trained already with the same arguments
    jobs = []
    for variant, overrides in cfg.variants.items():
        for seed in cfg.seeds:
            run_dir = out / f"{variant}_s{seed}"
            args = [*cfg.common, *overrides, f"train.seed={seed}", f"data.seed={seed}",
                    f"train.steps={cfg.steps}", f"data.version_dir={train_version}",
                    f"data.eval_version_dir={eval_version}"]
            stamp = run_dir / "ablation_args.json"
            final = run_dir / "final" / "model.safetensors"
            if stamp.is_file() and json.loads(stamp.read_text()) == args and final.is_file():
                print(f"=== {variant} seed {seed}: trained already, reused", flush=True)
                continue
            jobs.append((variant, seed, run_dir, args))
    running: list[tuple[str, int, Path, list[str], subprocess.Popen]] = []
    failed = []
    n_jobs = len(jobs)
    while jobs or running:
        while jobs and len(running) < cfg.parallel:
            variant, seed, run_dir, args = jobs.pop(0)
            if run_dir.exists():
                shutil.rmtree(run_dir)  # a stale run dir would be resumed, not retrained
            run_dir.mkdir(parents=True)
            print(f"=== train {variant} seed {seed} ({n_jobs - len(jobs)}/{n_jobs}, "
                  f"{time.time() - t0:.0f} s elapsed)", flush=True)
            cmd = [py, "-m", "mamo.train", "--config", cfg.train_config, "--run-dir", str(run_dir),
                   "--no-progress", *args]
            if cfg.parallel == 1:
                _sub(cmd, env=env)
                (run_dir / "ablation_args.json").write_text(json.dumps(args))
                continue
            running.append((variant, seed, run_dir, args, _launch(cmd, out / f"{variant}_s{seed}.log", env)))
        for job in list(running):
            variant, seed, run_dir, args, proc = job
            if proc.poll() is None:
                continue
            running.remove(job)
            if proc.returncode == 0:
                (run_dir / "ablation_args.json").write_text(json.dumps(args))
                print(f"--- {variant} seed {seed} trained ({time.time() - t0:.0f} s elapsed)", flush=True)
            else:
                failed.append(f"{variant}_s{seed}")
                print(f"!!! {variant} seed {seed} failed (exit {proc.returncode}); "
                      f"see {out / f'{variant}_s{seed}.log'}", flush=True)
        if running:
            time.sleep(2)
    if failed:
        raise SystemExit(f"training failed for {failed}")

    # 2. evaluate each run on the held-out version (reused when newer than the weights)
    all_results: dict[str, list[dict[str, Any]]] = {}
    for variant in cfg.variants:
        all_results[variant] = []
        for seed in cfg.seeds:
            run_dir = out / f"{variant}_s{seed}"
            final = run_dir / "final" / "model.safetensors"
            res_file = run_dir / "results.json"
            print(f"=== evaluate {variant} seed {seed} ({time.time() - t0:.0f} s elapsed)", flush=True)
            if not (res_file.is_file() and res_file.stat().st_mtime >= final.stat().st_mtime):
                evaluate(run_dir=run_dir, data=eval_version, k=cfg.eval.k, max_items=cfg.eval.max_items,
                         fg_seed=cfg.eval.seed, n_examples=4, device=device, threads=cfg.threads)
            res = json.loads(res_file.read_text())
            all_results[variant].append(res)
            fg = res.get("finegrained", {}).get("itm", {}).get("overall", float("nan"))
            print(f"    FG ITM overall {fg:.1f}  retrieval ITM R@mean "
                  f"{res['retrieval']['itm_rerank']['r_mean']:.1f}", flush=True)

    summary = summarize(all_results)
    table = format_table(summary)
    (out / "summary.json").write_text(json.dumps({"config": to_dict(cfg), "summary": summary,
                                                  "runs": {v: [r.get("finegrained", {}) for r in rs]
                                                           for v, rs in all_results.items()}}, indent=2))
    (out / "summary.md").write_text(format_table(summary, markdown=True) + "\n")
    plot_summary(summary, out / "ablation.png")
    plot_loss_curves(out, list(cfg.variants), list(cfg.seeds), out / "losses.png")
    print(f"\n=== ablation: {cfg.steps} steps x {len(cfg.seeds)} seeds per variant; "
          f"mean ± std [min-max] over seeds ({time.time() - t0:.0f} s)\n{table}\n\n"
          f"written: {out / 'summary.md'}, {out / 'ablation.png'}, {out / 'losses.png'}")
    return {"summary": summary, "table": table, "out": str(out)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mamo.ablation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs" / "ablation.yaml"))
    p.add_argument("overrides", nargs="*", help="dotted.key=value, e.g. steps=50 seeds=[0,1]")
    a = p.parse_args(argv)
    run_ablation(load_config(AblationConfig, a.config, a.overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
