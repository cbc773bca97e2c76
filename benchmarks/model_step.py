"""One MAMO pre-training step (forward + backward + AdamW + EMA) per configuration.

Each configuration runs in its own process so that peak memory (CPU: peak RSS growth after
the model is built; CUDA: ``max_memory_allocated``) and compile caches do not mix. The
baseline is ``attn=eager, compile=off`` of the same preset, measured in the same run.

    python benchmarks/model_step.py --threads 1   # tiny + small, eager/sdpa; tiny+sdpa compiled
    python benchmarks/model_step.py --presets tiny --steps 10
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(preset: str, attn: str, compile_: bool, batch: int, steps: int, warmup: int,
            device: str, threads: int) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    sys.path.insert(0, str(ROOT))
    from mamo.model import MAMO, loss_config, model_config

    torch.manual_seed(0)
    mcfg = model_config(preset, [f"attn_impl={attn}", "text_init=null"])
    model = MAMO(mcfg, loss_config(), num_concepts=1000).to(device)
    if compile_:
        model.compile()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    size = mcfg.vision.image_size
    length = 30
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (batch, length), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    labels = torch.full((batch, length), -100)
    labels[:, 1:8] = torch.randint(0, 1000, (batch, 7), generator=g)
    data = {"image": torch.randn(batch, 3, size, size, generator=g), "input_ids": ids,
            "attention_mask": torch.ones_like(ids), "concept_labels": labels}
    data = {k: v.to(device) for k, v in data.items()}
    cuda = device.startswith("cuda")

    def step(i: int) -> None:
        out = model(data, generator_seed=i)
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.momentum_update()

    t0 = time.perf_counter()
    for i in range(warmup):
        step(i)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    warm_s = time.perf_counter() - t0
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_mb()
    return {"preset": preset, "attn": attn, "compile": compile_, "batch": batch, "steps": steps,
            "samples_per_s": batch * steps / dt, "step_s": dt / steps, "warmup_s": warm_s,
            "peak_mb": peak, "peak_kind": "cuda_max_allocated" if cuda else "process_max_rss",
            "rss_growth_in_timed_steps_mb": _rss_mb() - rss_before if not cuda else None,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="tiny,small")
    ap.add_argument("--attn", default="eager,sdpa")
    ap.add_argument("--compile", default="tiny", help="presets also measured with torch.compile "
                    "(comma list; 'none' for no compiled runs)")
    ap.add_argument("--compile-attn", default="sdpa", help="attention impls measured compiled")
    ap.add_argument("--batch", default="tiny=16,small=4")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default: tiny 8, small 2)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "model_step.json"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(run_one(**spec)))
        return 0

    batches = dict(kv.split("=") for kv in args.batch.split(","))
    compiled = set() if args.compile == "none" else set(args.compile.split(","))
    results = []
    for preset in args.presets.split(","):
        steps = args.steps or (8 if preset == "tiny" else 2)
        for comp in ([False, True] if preset in compiled else [False]):
            for attn in args.attn.split(","):
                if comp and attn not in args.compile_attn.split(","):
                    continue
                spec = {"preset": preset, "attn": attn, "compile_": comp,
                        "batch": int(batches.get(preset, 4)), "steps": steps,
                        "warmup": args.warmup, "device": args.device, "threads": args.threads}
                proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                                      capture_output=True, text=True, cwd=ROOT,
                                      env={**os.environ, "PYTHONPATH": str(ROOT)})
                if proc.returncode != 0:
                    print(f"FAILED {spec}: {proc.stderr[-2000:]}", file=sys.stderr)
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                results.append(r)
                print(f"  measured {preset:<5} attn={attn:<5} compile={str(comp):<5} "
                      f"{r['samples_per_s']:8.2f} samples/s", file=sys.stderr, flush=True)

    print(f"\nMAMO train step (fwd+bwd+AdamW+EMA), device={args.device}")
    print(f"{'preset':<6} {'batch':>5} {'attn':<6} {'compile':<8} {'samples/s':>10} {'s/step':>8} "
          f"{'vs eager':>9} {'peak MB':>9}")
    for r in results:
        base = next((b for b in results if b["preset"] == r["preset"] and b["attn"] == "eager"
                     and not b["compile"]), None)
        ratio = r["samples_per_s"] / base["samples_per_s"] if base else float("nan")
        print(f"{r['preset']:<6} {r['batch']:>5} {r['attn']:<6} {'on' if r['compile'] else 'off':<8} "
              f"{r['samples_per_s']:>10.2f} {r['step_s']:>8.3f} {ratio:>8.2f}x {r['peak_mb']:>9.0f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\n(peak MB = {results[0]['peak_kind'] if results else '-'}; raw results in {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
