"""``python -m flows.ablation`` (also ``python -m mamo.ablation``): does full MAMO beat its parts
at the same training budget?

Variants (configs/ablation.yaml, each a list of dotted overrides of the training config):

  itc_itm      ITC + ITM only (no masked modelling)
  itc_itm_mlm  ITC + ITM + token-level MLM (masked text only, WordPiece targets)
  mamo         full MAMO: ITC + ITM + MMM (implicit + explicit visual + concept targets)

Each variant is trained for the same number of steps over several seeds (``train.seed`` and
``data.seed``), on the demo's data (prepared by the demo's stages if missing), then evaluated
on the held-out version: retrieval, and the fine-grained readouts (ITM/ITC benchmark, linear
probes, masked-word scoring) on a held-out synthetic version sized for >= 2,000 items per
change type (generated once under ``<out>/heldout``), with accuracy-versus-steps curves from
the runs' checkpoints. The table gives mean ± sample standard deviation over seeds, and the
min-max range (``mamo.evaluation.ablation``); ``ablation.json`` holds the per-seed metrics and
the paired bootstrap intervals of the differences (``eval.reference`` minus each other
variant). Finished runs and evaluations are reused, so an interrupted ablation continues where
it stopped; the training stamp covers training arguments only.

    python -m flows.ablation                        # configs/ablation.yaml
    python -m flows.ablation steps=50 seeds=[0,1]   # dotted overrides
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import field, replace
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
    k: int = 16  # retrieval: the top-k re-ranked by ITM
    max_items: int = 500  # retrieval: images of the eval version
    seed: int = 0  # of the fine-grained negatives and the probe split
    # the fine-grained readouts' own held-out version (generated under <out>/heldout, seed
    # fg_data_seed, more relation and count scenes); 0 = on the eval version's own scenes
    fg_images: Annotated[int, Field(ge=0)] = 10000
    fg_data_seed: int = 1
    fg_kind_weights: tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)],
                           Annotated[float, Field(ge=0)]] = (1.0, 1.5, 2.5)
    fg_image_size: Annotated[int, Field(ge=8)] = 96
    # items per change type (0 = all); 10,000 images give >= 2,000 of each type
    items_per_type: Annotated[int, Field(ge=0)] = 2000
    # share of the fine-grained images whose items train the linear probes
    probe_train_share: Annotated[float, Field(gt=0, lt=1)] = 0.5
    # accuracy vs steps: items per type at each checkpoint along the way (0 = no curves)
    curve_items_per_type: Annotated[int, Field(ge=0)] = 300
    # paired differences: this variant minus each other one, bootstrap replicates
    reference: str = "mamo"
    n_boot: Annotated[int, Field(ge=100)] = 2000
    # results as data (default <out>/ablation.json); its figures are written beside it
    results_json: str = ""
    # a markdown page whose generated block (between the ablation-results markers) is refreshed
    # from the results, e.g. docs/ablation.md; empty = none
    docs_page: str = ""


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

    from mamo.evaluation.ablation import (
        format_table,
        plot_curves,
        plot_differences,
        plot_loss_curves,
        plot_summary,
        refresh_docs_block,
        results_markdown,
        summarize,
    )
    from mamo.evaluation.runner import evaluate

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

    # 2. evaluate each run: retrieval on the eval version, the fine-grained readouts on their
    #    own held-out version (reused when the stamp matches and the results are newer than
    #    the weights; the training stamp is untouched, so finished runs are never retrained)
    from mamo.evaluation.runner import FineGrained, ITEMS_FILE, load_items

    fg_version = heldout_version(cfg, out)
    fg = FineGrained(None, cfg.eval.items_per_type or None, cfg.eval.probe_train_share)
    fg_set = None  # read once, on first need: every run shares the preprocessing
    eval_params = {"data": str(eval_version), "k": cfg.eval.k, "max_items": cfg.eval.max_items,
                   "seed": cfg.eval.seed, "fg": str(fg_version or ""), "items_per_type": fg.items_per_type,
                   "probe_train_share": fg.probe_train_share, "readouts": READOUTS_VERSION}
    all_results: dict[str, list[dict[str, Any]]] = {}
    all_items: dict[str, list[dict[str, Any]]] = {}
    eval_seconds: dict[str, list[float]] = {}
    for variant in cfg.variants:
        all_results[variant], all_items[variant], eval_seconds[variant] = [], [], []
        for seed in cfg.seeds:
            rd = RunDir(out / run_name(variant, seed))
            final, res_file = rd.final.weights, rd.results
            print(f"=== evaluate {variant} seed {seed} ({time.time() - t0:.0f} s elapsed)", flush=True)
            stamp = Stamp(rd.path / "eval_args.json", eval_params)
            fresh = stamp.matches() and res_file.is_file() and res_file.stat().st_mtime >= final.stat().st_mtime
            if not fresh:
                if fg_version is not None and fg_set is None:
                    fg_set = load_heldout(fg_version, rd)
                started = time.time()
                evaluate(run_dir=rd.path, data=eval_version, k=cfg.eval.k, max_items=cfg.eval.max_items,
                         fg_seed=cfg.eval.seed, n_examples=4, device=device, threads=cfg.threads,
                         fg=replace(fg, data=fg_set))
                stamp.write(round(time.time() - started, 1))
            res = json.loads(res_file.read_text())
            all_results[variant].append(res)
            all_items[variant].append(load_items(rd.path / ITEMS_FILE) if (rd.path / ITEMS_FILE).is_file() else {})
            eval_seconds[variant].append(float(res.get("eval_seconds", 0.0)))
            fg_acc = res.get("finegrained", {}).get("itm", {}).get("overall", float("nan"))
            probe = (res.get("probe") or {}).get("fused", {}).get("overall")
            print(f"    FG ITM overall {fg_acc:.1f}  probe fused {probe if probe is None else f'{probe:.1f}'}  "
                  f"retrieval ITM R@mean {res['retrieval']['itm_rerank']['r_mean']:.1f}  "
                  f"(eval {res.get('eval_seconds', 0):.0f} s)", flush=True)

    # 3. accuracy vs steps from the checkpoints along the way, on a smaller item subset
    curves: dict[str, dict[str, dict[str, list[float | None]]]] = {}
    if cfg.eval.curve_items_per_type > 0:
        if fg_set is None and fg_version is not None:
            fg_set = load_heldout(fg_version, RunDir(out / run_name(next(iter(cfg.variants)), cfg.seeds[0])))
        curve_fg = replace(fg, items_per_type=cfg.eval.curve_items_per_type)
        for variant in cfg.variants:
            curves[variant] = {}
            for seed in cfg.seeds:
                rd = RunDir(out / run_name(variant, seed))
                points = run_curve(rd, cfg.steps, fg_set, curve_fg, cfg.eval.seed, device, fg_version or eval_version)
                for step, metrics in points.items():
                    for m, v in metrics.items():
                        curves[variant].setdefault(m, {}).setdefault(str(step), []).append(v)

    summary = summarize(all_results)
    table = format_table(summary)
    write_json(out / "summary.json", {"config": to_dict(cfg), "summary": summary,
                                      "runs": {v: [r.get("finegrained", {}) for r in rs]
                                               for v, rs in all_results.items()}})
    write_text(out / "summary.md", format_table(summary, markdown=True) + "\n")
    plot_summary(summary, out / "ablation.png")
    plot_loss_curves({v: [RunDir(out / run_name(v, seed)).metrics for seed in cfg.seeds] for v in cfg.variants},
                     out / "losses.png")

    # 4. results as data: per-seed metrics, paired differences, figures beside the JSON
    results_path = resolve(cfg.eval.results_json) if cfg.eval.results_json else out / "ablation.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    data = ablation_data(cfg, all_results, all_items, eval_seconds, curves, train_version, eval_version,
                         fg_version)
    figures = {"differences": results_path.with_name("ablation_differences.png"),
               "accuracy vs steps": results_path.with_name("ablation_curves.png")}
    plot_differences(data, figures["differences"])
    plot_curves(curves, figures["accuracy vs steps"])
    data["figures"] = {k: p.name for k, p in figures.items() if p.is_file()}
    write_json(results_path, data)
    block = results_markdown(data, data["figures"])
    write_text(results_path.with_suffix(".md"), block + "\n")
    if cfg.eval.docs_page:
        page = resolve(cfg.eval.docs_page)
        rel = {k: Path(os.path.relpath(results_path.parent / v, page.parent)).as_posix()
               for k, v in data["figures"].items()}
        if not refresh_docs_block(page, results_markdown(data, rel)):
            log.warning("%s has no ablation-results markers: left as it is", page)
    print(f"\n=== ablation: {cfg.steps} steps x {len(cfg.seeds)} seeds per variant; "
          f"mean ± std [min-max] over seeds ({time.time() - t0:.0f} s)\n{table}\n\n{block}\n\n"
          f"written: {results_path}, {out / 'summary.md'}, {out / 'ablation.png'}, {out / 'losses.png'}")
    return {"summary": summary, "table": table, "out": str(out), "results_json": str(results_path)}


# Bump when the readouts change what they compute: finished evaluations are then redone.
READOUTS_VERSION = 2


def heldout_version(cfg: AblationConfig, out: Path) -> Path | None:
    """The fine-grained readouts' held-out version, generated under ``<out>/heldout`` when
    missing (None: ``eval.fg_images=0``, the eval version's own scenes are used)."""
    from ingest.synthetic import SyntheticConfig
    from ingest.synthetic_version import write_synthetic_version

    e = cfg.eval
    if e.fg_images == 0:
        return None
    w = "-".join(f"{x:g}" for x in e.fg_kind_weights)
    name = f"fg_n{e.fg_images}_s{e.fg_data_seed}_w{w}_px{e.fg_image_size}"
    root = out / "heldout"
    vdir = root / "synthetic" / name
    if not (vdir / "manifest.json").is_file():
        print(f"=== held-out fine-grained version: {e.fg_images} images -> {vdir}", flush=True)
        write_synthetic_version(root, "synthetic", name,
                                SyntheticConfig(n=e.fg_images, seed=e.fg_data_seed, image_size=e.fg_image_size,
                                                kind_weights=tuple(e.fg_kind_weights)),
                                samples_per_shard=1000, overwrite=True, progress=False)
    return vdir


def load_heldout(version: Path, rd: RunDir) -> Any:
    """The held-out set preprocessed as the runs' eval transform does (their shared config)."""
    from mamo.evaluation.runner import FineGrained, load_fg_set
    from mamo.trainer.config import load_run_config

    c = load_run_config(str(rd.config), [])
    t = time.time()
    fg_set = load_fg_set(FineGrained(version), c.model.vision.image_size, c.data.mean, c.data.std,
                         c.data.augment.eval_crop_fraction)
    print(f"    held-out set read: {len(fg_set)} images ({time.time() - t:.0f} s)", flush=True)
    return fg_set


def run_curve(rd: RunDir, steps: int, fg_set: Any, fg: Any, seed: int, device: str,
              data: Path) -> dict[int, dict[str, float | None]]:
    """``{step: flat metrics}`` of every checkpoint of a run and its final model, on the
    curve's item subset; kept in ``<run>/curve.json`` and reused per checkpoint."""
    from mamo.evaluation.ablation import flat_metrics
    from mamo.evaluation.runner import evaluate_finegrained_checkpoint
    from mamo.run_dir import step_of

    if fg_set is None:
        from mamo.evaluation.data import load_eval_set
        from mamo.trainer.config import load_run_config

        c = load_run_config(str(rd.config), [])
        fg_set = load_eval_set(data, c.model.vision.image_size, c.data.mean, c.data.std, None,
                               c.data.augment.eval_crop_fraction)
    path = rd.path / "curve.json"
    key = {"items_per_type": fg.items_per_type, "seed": seed, "data": str(data), "readouts": READOUTS_VERSION}
    old = json.loads(path.read_text()) if path.is_file() else {}
    points = old.get("points", {}) if old.get("key") == key else {}
    ckpts = sorted((step_of(p), p) for p in rd.checkpoints.glob("step_*") if step_of(p) is not None) \
        if rd.checkpoints.is_dir() else []
    ckpts = [(s, p) for s, p in ckpts if s < steps] + [(steps, rd.final.path)]
    for step, ck in ckpts:
        weights = Path(ck) / "model.safetensors"
        entry = points.get(str(step))
        if entry and entry.get("mtime") == weights.stat().st_mtime:
            continue
        t = time.time()
        res = evaluate_finegrained_checkpoint(ck, fg_set, fg, seed, device)
        points[str(step)] = {"mtime": weights.stat().st_mtime, "metrics": flat_metrics(res)}
        print(f"    curve {rd.path.name} step {step}: FG ITM {res['finegrained']['itm']['overall']:.1f} "
              f"({time.time() - t:.0f} s)", flush=True)
        write_json(path, {"key": key, "points": points})
    return {int(s): p["metrics"] for s, p in points.items() if int(s) in {s for s, _ in ckpts}}


def ablation_data(cfg: AblationConfig, results: dict[str, list[dict[str, Any]]],
                  items: dict[str, list[dict[str, Any]]], eval_seconds: dict[str, list[float]],
                  curves: dict[str, Any], train_version: Path, eval_version: Path,
                  fg_version: Path | None) -> dict[str, Any]:
    """The ablation's results as data (``ablation.json``)."""
    from mamo.evaluation.ablation import differences, flat_metrics, summary_of
    from mamo.trainer.config import load_run_config

    first = RunDir(resolve(cfg.out) / run_name(next(iter(cfg.variants)), cfg.seeds[0]))
    batch_size = load_run_config(str(first.config), []).data.batch_size
    per_seed = {v: [flat_metrics(r) for r in rs] for v, rs in results.items()}
    some = next((r for rs in results.values() for r in rs if "finegrained_items_per_type" in r), {})
    return {
        "steps": cfg.steps, "batch_size": batch_size, "samples_per_run": cfg.steps * batch_size,
        "seeds": list(cfg.seeds),
        "items_per_type": some.get("finegrained_items_per_type", {}),
        "data": {"train": str(train_version), "eval": str(eval_version),
                 "finegrained": str(fg_version or eval_version), "finegrained_images": some.get("finegrained_images")},
        "variants": {v: {"overrides": list(cfg.variants[v]),
                         "per_seed": [{"seed": s, "metrics": m} for s, m in zip(cfg.seeds, per_seed[v])],
                         "summary": summary_of(per_seed[v]),
                         "eval_seconds": eval_seconds.get(v, [])} for v in results},
        "differences": differences(per_seed, items, cfg.eval.reference, cfg.eval.n_boot, cfg.eval.seed),
        "statistics": {"std": "sample (ddof=1) over seeds",
                       "ci95": "percentile bootstrap, paired: seed indices resampled (the same for both "
                               "variants), and inside, item indices (the same items for both); "
                               "retrieval metrics: seeds only", "n_boot": cfg.eval.n_boot},
        "curves": curves,
        "config": to_dict(cfg),
    }


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
