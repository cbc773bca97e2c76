"""``python -m flows.demo`` (also ``python -m mamo.demo``): the whole pipeline on a fresh
machine, in one command.

Stages (each skipped when its output exists, is valid and was made with the same settings):

  1. source    synthetic images + captions written as files (the "web" to download from)
  2. evaldata  a held-out synthetic version (another seed), written locally
  3. ingest    a loopback HTTP server serves them; the Prefect ingest flow downloads them with
               img2dataset into a WebDataset version (manifest, DALI indexes, failures),
               excluding images near-duplicate of the held-out ones (filters.exclude_versions)
  4. concepts  the Prefect concepts flow: spaCy concept vocabulary + annotations
  5. train     ``python -m mamo.train`` with the tiny preset on the CPU
  6. evaluate  retrieval (ITC, ITM re-ranking) + fine-grained benchmark + HTML report

Settings: configs/demo.yaml plus dotted overrides, e.g. ``python -m flows.demo data.n=300
train.steps=20``. ``force=[train]`` (or ``--force train``) redoes a stage and what follows.
Every stage is a library function or CLI of ingest, concepts or mamo; the skipping is
``flows.stages``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from flows.stages import REPO, Stages, resolve, run_cli, stage_env
from mamo.core.cli import parse_args, run
from mamo.core.config import check, load_config, section, to_dict
from mamo.run_dir import RunDir

STAGES: tuple[str, ...] = ("source", "evaldata", "ingest", "concepts", "train", "evaluate")
log = logging.getLogger(__name__)


@section
class DemoData:
    n: Annotated[int, Field(ge=8)] = 3000  # training pairs, downloaded over HTTP
    seed: int = 0
    eval_n: Annotated[int, Field(ge=8)] = 500  # held-out pairs (another seed)
    eval_seed: int = 1
    image_size: int = 96  # side of the source images (and of the stored JPEGs)
    samples_per_shard: int = 1000
    download_processes: int = 1
    download_threads: int = 8
    # share of training pairs (2k, 2k+1) generated as relation twins (`ingest synthetic
    # --twins`); 0 for the demo (web data has none); the twin-trained ablation sets it
    twins: Annotated[float, Field(ge=0, le=1)] = 0.0
    # extra dotted overrides for the ingest flow (after the demo's own, so they win)
    ingest_overrides: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check(self.seed != self.eval_seed, "eval_seed", "must differ from data.seed (held out)")


@section
class DemoTrain:
    config: str = "configs/tiny.yaml"
    steps: Annotated[int, Field(ge=1)] = 500
    # torch CPU threads for training and evaluation; 0 = auto (all cores when the machine is
    # idle as the demo starts, else 1). On an idle 2-core machine 2 threads made the tiny step
    # ~2.4x faster (losses identical to 1 thread); on a shared one oversubscribed OpenMP
    # threads made it ~6-10x slower than one thread.
    threads: Annotated[int, Field(ge=0)] = 0
    # extra dotted overrides passed to `python -m mamo.train`
    overrides: list[str] = field(default_factory=list)


@section
class DemoEval:
    k: int = 16  # top-k of ITC re-ranked by ITM
    max_items: int = 500
    examples: int = 8
    seed: int = 0  # fine-grained negatives


@section
class DemoConfig:
    out: str = "runs/demo"
    run_name: str = "tiny"
    # stages to redo (and everything after)
    force: list[Literal[(*STAGES, "all")]] = field(default_factory=list)
    data: DemoData = field(default_factory=DemoData)
    train: DemoTrain = field(default_factory=DemoTrain)
    eval: DemoEval = field(default_factory=DemoEval)


# ----------------------------------------------------------------------------- the demo

def _manifest_ok(version_dir: Path) -> bool:
    try:
        from ingest.manifest import load_manifest

        m = load_manifest(version_dir)
        return m["counts"]["written"] > 0 and all((version_dir / s["tar"]).is_file() for s in m["shards"])
    except Exception:  # noqa: BLE001 - any problem means "redo the stage"
        return False


def torch_threads(requested: int) -> int:
    """``requested``, or for 0 all cores if the 1-minute load average says they are free."""
    if requested:
        return requested
    cores = os.cpu_count() or 1
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else float(cores)
    threads = cores if busy < 0.5 else 1  # another job running: one thread, never oversubscribe
    log.info("torch threads: %d (%d cores, load average %.1f)", threads, cores, busy)
    return threads


def demo_root(cfg: DemoConfig) -> Path:
    return resolve(cfg.out)


def prepare_data(cfg: DemoConfig, st: Stages | None = None) -> tuple[Path, Path]:
    """Stages 1-4: the downloaded training version (with concepts) and the held-out version.
    Returns ``(train_version_dir, eval_version_dir)``; reused by ``flows.ablation``."""
    root = demo_root(cfg)
    root.mkdir(parents=True, exist_ok=True)
    os.environ.update(stage_env(root))  # this process (ingest in-process, evaluation) as its children
    st = st or Stages(root, STAGES, cfg.force)
    d = cfg.data
    py = sys.executable
    source = root / "source"
    data_root = root / "data"
    train_version = data_root / "synthetic" / "train"
    eval_version = data_root / "synthetic" / "eval"

    # 1. source files to serve
    def do_source() -> None:
        from ingest.synthetic import SyntheticConfig
        from ingest.synthetic_version import write_synthetic_url_source

        if source.exists():
            shutil.rmtree(source)
        write_synthetic_url_source(source, SyntheticConfig(n=d.n, seed=d.seed, image_size=d.image_size,
                                                           twins=d.twins), image_format="jpg")

    def source_ok() -> bool:
        f = source / "captions.jsonl"
        return f.is_file() and sum(1 for line in f.open() if line.strip()) == d.n

    # (a twin share of 0 keeps the key of sources made before twins existed: no redo)
    st.run("source", {"n": d.n, "seed": d.seed, "size": d.image_size, **({"twins": d.twins} if d.twins else {})},
           source_ok, do_source)

    # 2. held-out evaluation data (same generator, another seed; written locally)
    def do_evaldata() -> None:
        from ingest.synthetic import SyntheticConfig
        from ingest.synthetic_version import write_synthetic_version

        write_synthetic_version(data_root, "synthetic", "eval",
                                SyntheticConfig(n=d.eval_n, seed=d.eval_seed, image_size=d.image_size),
                                d.samples_per_shard, overwrite=True)

    st.run("evaldata", {"n": d.eval_n, "seed": d.eval_seed, "size": d.image_size},
           lambda: _manifest_ok(eval_version), do_evaldata)

    # 3. download through the real path: HTTP server -> Prefect flow -> img2dataset
    def do_ingest() -> None:
        from ingest.http_server import serve_directory
        from ingest.synthetic_version import url_table_for

        if train_version.exists():
            shutil.rmtree(train_version)
        with serve_directory(source) as base:
            log.info("serving %s at %s", source, base)
            table = url_table_for(source, base)
            run_cli([py, "-m", "flows", "run", "ingest",
                     f"out={data_root}", "dataset=synthetic", "version=train",
                     f"samples_per_shard={d.samples_per_shard}",
                     "source.kind=urls", f"source.path={table}",
                     "source.extra_cols=[synthetic]", "source.json_cols=[synthetic]",
                     f"download.image_size={d.image_size}", "download.allow_private=true",
                     f"download.processes={d.download_processes}", f"download.threads={d.download_threads}",
                     f"filters.exclude_versions=[{eval_version}]", *d.ingest_overrides],
                    env=stage_env(root))

    st.run("ingest", {"n": d.n, "seed": d.seed, "size": d.image_size, "shard": d.samples_per_shard,
                      "exclude": str(eval_version), **({"overrides": d.ingest_overrides} if d.ingest_overrides else {})},
           lambda: _manifest_ok(train_version), do_ingest)

    # 4. concepts (the flow writes concepts/<vocab_id>/ and concepts/LATEST)
    def do_concepts() -> None:
        run_cli([py, "-m", "flows", "run", "concepts", f"version_dir={train_version}"], env=stage_env(root))

    st.run("concepts", {"version": str(train_version)},
           lambda: (train_version / "concepts" / "LATEST").is_file(), do_concepts)
    return train_version, eval_version


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    root = demo_root(cfg)
    t_start = time.time()
    st = Stages(root, STAGES, cfg.force)
    train_version, eval_version = prepare_data(cfg, st)
    py = sys.executable
    run_dir = root / cfg.run_name
    rd = RunDir(run_dir)
    threads = torch_threads(cfg.train.threads)

    # 5. train tiny on the CPU
    model_file = rd.final.weights

    def do_train() -> None:
        if run_dir.exists():
            shutil.rmtree(run_dir)  # a stale run would be resumed, not retrained
        run_cli([py, "-m", "mamo.train", "--config", cfg.train.config,
                 f"data.version_dir={train_version}", f"data.eval_version_dir={eval_version}",
                 f"run.dir={root}", f"run.name={cfg.run_name}", f"train.steps={cfg.train.steps}",
                 f"train.num_threads={threads}", *cfg.train.overrides], env=stage_env(root))

    st.run("train", {"config": cfg.train.config, "steps": cfg.train.steps, "overrides": cfg.train.overrides,
                     "data": str(train_version)},
           model_file.is_file, do_train)

    # 6. evaluate + report
    from mamo.evaluation.report import print_headline
    from mamo.evaluation.runner import evaluate

    results_file = rd.results
    report = rd.report_index

    def do_evaluate() -> None:
        evaluate(run_dir=run_dir, data=eval_version, k=cfg.eval.k, max_items=cfg.eval.max_items,
                 fg_seed=cfg.eval.seed, n_examples=cfg.eval.examples, threads=threads)

    def eval_ok() -> bool:
        from mamo.evaluation.report import check_report

        return results_file.is_file() and report.is_file() and check_report(report) == [] \
            and results_file.stat().st_mtime >= model_file.stat().st_mtime

    st.run("evaluate", to_dict(cfg.eval), eval_ok, do_evaluate)

    results = json.loads(results_file.read_text())
    print(f"\n=== demo finished in {time.time() - t_start:.0f} s (this invocation)")
    print_headline(results, report)
    return {"results": results, "report": str(report), "root": str(root), "timings": st.timings}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flows.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"), help="demo YAML config")
    p.add_argument("--force", action="append", default=[], choices=[*STAGES, "all"],
                   help="redo this stage and everything after it (repeatable)")
    p.add_argument("overrides", nargs="*", help="dotted.key=value, e.g. data.n=300 train.steps=20")

    def demo() -> None:
        a = parse_args(p, argv)
        cfg = load_config(DemoConfig, a.config, a.overrides)
        cfg.force = [*cfg.force, *a.force]
        run_demo(cfg)

    return run(demo)


if __name__ == "__main__":
    sys.exit(main())
