"""``python -m mamo.demo``: the whole pipeline on a fresh machine, in one command.

Stages (each skipped when its output exists, is valid and was made with the same settings):

  1. source    synthetic images + captions written as files (the "web" to download from)
  2. ingest    a loopback HTTP server serves them; the Prefect ingest flow downloads them with
               img2dataset into a WebDataset version (manifest, DALI indexes, failures)
  3. evaldata  a held-out synthetic version (another seed), written locally
  4. concepts  the Prefect concepts flow: spaCy concept vocabulary + annotations
  5. train     ``python -m mamo.train`` with the tiny preset on the CPU
  6. evaluate  retrieval (ITC, ITM re-ranking) + fine-grained benchmark + HTML report

Settings: configs/demo.yaml plus dotted overrides, e.g. ``python -m mamo.demo data.n=300
train.steps=20``. ``force=[train]`` (or ``--force train``) redoes a stage and what follows.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

from pydantic import Field

from mamo.core.config import check, load_config, section, to_dict

STAGES: tuple[str, ...] = ("source", "ingest", "evaldata", "concepts", "train", "evaluate")
REPO = Path(__file__).resolve().parents[1]


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

    def __post_init__(self) -> None:
        check(self.seed != self.eval_seed, "eval_seed", "must differ from data.seed (held out)")


@section
class DemoTrain:
    config: str = "configs/tiny.yaml"
    steps: Annotated[int, Field(ge=1)] = 500
    # torch CPU threads for training and evaluation. 1 by default: on a shared 2-core machine
    # oversubscribed OpenMP threads made a tiny step ~10x slower than one thread.
    threads: int = 1
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


# ----------------------------------------------------------------------------- helpers

def banner(i: int, name: str, msg: str) -> None:
    print(f"\n=== [{i}/{len(STAGES)}] {name}: {msg}", flush=True)


def _stamp_key(params: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Stages:
    """Runs stages in order; a stage is skipped when its stamp (params hash) matches and its
    ``valid()`` check passes. Forcing a stage, or redoing it, invalidates the later ones."""

    def __init__(self, root: Path, force: list[str]):
        self.root = root
        self.stamps = root / "stages"
        self.stamps.mkdir(parents=True, exist_ok=True)
        self.force = set(STAGES) if "all" in force else set(force)
        self.redone = False
        self.timings: dict[str, float] = {}

    def run(self, name: str, params: dict[str, Any], valid: Callable[[], bool], do: Callable[[], None]) -> None:
        i = STAGES.index(name) + 1
        stamp = self.stamps / f"{name}.json"
        key = _stamp_key(params)
        old = json.loads(stamp.read_text()) if stamp.is_file() else {}
        if not self.redone and name not in self.force and old.get("key") == key and valid():
            banner(i, name, f"done already (made in {old.get('seconds', '?')} s), skipped")
            return
        why = ("forced" if name in self.force else "an earlier stage was redone" if self.redone
               else "settings changed" if old else "first run")
        banner(i, name, f"running ({why})")
        stamp.unlink(missing_ok=True)
        t0 = time.time()
        do()
        if not valid():
            raise SystemExit(f"stage {name} finished but its output is not valid; see the messages above")
        secs = round(time.time() - t0, 1)
        stamp.write_text(json.dumps({"key": key, "params": params, "seconds": secs}, default=str))
        self.timings[name] = secs
        self.redone = True
        print(f"--- {name} done in {secs} s", flush=True)


def _manifest_ok(version_dir: Path) -> bool:
    try:
        from ingest.manifest import load_manifest

        m = load_manifest(version_dir)
        return m["counts"]["written"] > 0 and all((version_dir / s["tar"]).is_file() for s in m["shards"])
    except Exception:  # noqa: BLE001 - any problem means "redo the stage"
        return False


def _sub(cmd: list[str], env: dict[str, str] | None = None) -> None:
    """Run a stage's CLI in a child process (its own progress output goes to the console)."""
    print("$ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=REPO, env=env)
    if r.returncode != 0:
        raise SystemExit(f"command failed with exit code {r.returncode}: {' '.join(cmd)}")


def quiet_env(root: Path) -> dict[str, str]:
    """Offline, quiet Prefect with its state under the demo folder; no update checks."""
    env = dict(os.environ)
    env.setdefault("PREFECT_HOME", str((root / ".prefect").resolve()))
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    env.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


# ----------------------------------------------------------------------------- the demo

def demo_root(cfg: DemoConfig) -> Path:
    return (REPO / cfg.out) if not Path(cfg.out).is_absolute() else Path(cfg.out)


def prepare_data(cfg: DemoConfig, st: Stages | None = None) -> tuple[Path, Path]:
    """Stages 1-4: the downloaded training version (with concepts) and the held-out version.
    Returns ``(train_version_dir, eval_version_dir)``; reused by ``mamo.ablation``."""
    root = demo_root(cfg)
    root.mkdir(parents=True, exist_ok=True)
    os.environ.update(quiet_env(root))
    st = st or Stages(root, cfg.force)
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
        write_synthetic_url_source(source, SyntheticConfig(n=d.n, seed=d.seed, image_size=d.image_size),
                                   image_format="jpg")

    def source_ok() -> bool:
        f = source / "captions.jsonl"
        return f.is_file() and sum(1 for line in f.open() if line.strip()) == d.n

    st.run("source", {"n": d.n, "seed": d.seed, "size": d.image_size}, source_ok, do_source)

    # 2. download through the real path: HTTP server -> Prefect flow -> img2dataset
    def do_ingest() -> None:
        from ingest.http_server import serve_directory
        from ingest.synthetic_version import url_table_for

        if train_version.exists():
            shutil.rmtree(train_version)
        with serve_directory(source) as base:
            print(f"serving {source} at {base}", flush=True)
            table = url_table_for(source, base)
            _sub([py, "-m", "flows", "run", "ingest",
                  f"out={data_root}", "dataset=synthetic", "version=train",
                  f"samples_per_shard={d.samples_per_shard}",
                  "source.kind=urls", f"source.path={table}",
                  "source.extra_cols=[synthetic]", "source.json_cols=[synthetic]",
                  f"download.image_size={d.image_size}", "download.allow_private=true",
                  f"download.processes={d.download_processes}", f"download.threads={d.download_threads}"],
                 env=quiet_env(root))

    st.run("ingest", {"n": d.n, "seed": d.seed, "size": d.image_size, "shard": d.samples_per_shard},
           lambda: _manifest_ok(train_version), do_ingest)

    # 3. held-out evaluation data (same generator, another seed; written locally)
    def do_evaldata() -> None:
        from ingest.synthetic import SyntheticConfig
        from ingest.synthetic_version import write_synthetic_version

        write_synthetic_version(data_root, "synthetic", "eval",
                                SyntheticConfig(n=d.eval_n, seed=d.eval_seed, image_size=d.image_size),
                                d.samples_per_shard, overwrite=True)

    st.run("evaldata", {"n": d.eval_n, "seed": d.eval_seed, "size": d.image_size},
           lambda: _manifest_ok(eval_version), do_evaldata)

    # 4. concepts (the flow writes concepts/<vocab_id>/ and concepts/LATEST)
    def do_concepts() -> None:
        _sub([py, "-m", "flows", "run", "concepts", f"version_dir={train_version}"], env=quiet_env(root))

    st.run("concepts", {"version": str(train_version)},
           lambda: (train_version / "concepts" / "LATEST").is_file(), do_concepts)
    return train_version, eval_version


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    root = demo_root(cfg)
    t_start = time.time()
    st = Stages(root, cfg.force)
    train_version, eval_version = prepare_data(cfg, st)
    py = sys.executable
    run_dir = root / cfg.run_name

    # 5. train tiny on the CPU
    model_file = run_dir / "final" / "model.safetensors"

    def do_train() -> None:
        if run_dir.exists():
            shutil.rmtree(run_dir)  # a stale run would be resumed, not retrained
        _sub([py, "-m", "mamo.train", "--config", cfg.train.config,
              f"data.version_dir={train_version}", f"data.eval_version_dir={eval_version}",
              f"run.dir={root}", f"run.name={cfg.run_name}", f"train.steps={cfg.train.steps}",
              f"train.num_threads={cfg.train.threads}", *cfg.train.overrides], env=quiet_env(root))

    st.run("train", {"config": cfg.train.config, "steps": cfg.train.steps, "overrides": cfg.train.overrides,
                     "data": str(train_version)},
           model_file.is_file, do_train)

    # 6. evaluate + report
    from mamo.evaluate import evaluate, print_headline

    results_file = run_dir / "results.json"
    report = run_dir / "report" / "index.html"

    def do_evaluate() -> None:
        evaluate(run_dir=run_dir, data=eval_version, k=cfg.eval.k, max_items=cfg.eval.max_items,
                 fg_seed=cfg.eval.seed, n_examples=cfg.eval.examples, threads=cfg.train.threads)

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
    p = argparse.ArgumentParser(prog="python -m mamo.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"), help="demo YAML config")
    p.add_argument("--force", action="append", default=[], choices=[*STAGES, "all"],
                   help="redo this stage and everything after it (repeatable)")
    p.add_argument("overrides", nargs="*", help="dotted.key=value, e.g. data.n=300 train.steps=20")
    a = p.parse_args(argv)
    cfg = load_config(DemoConfig, a.config, a.overrides)
    cfg.force = [*cfg.force, *a.force]
    run_demo(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
