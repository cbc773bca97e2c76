"""One MAMO pre-training step (forward + backward + AdamW + EMA) per configuration, against a
baseline configuration of the same preset measured in the same run.

    python -m benchmarks.model_step --threads 1    # CPU: tiny + small, eager vs sdpa; tiny sdpa compiled
    python -m benchmarks.model_step --presets tiny --steps 10
    python -m benchmarks.model_step --device cuda --presets base --attn sdpa,triton --batch base=64
    python -m benchmarks.model_step --smoke
    python -m benchmarks.model_step --budget --presets base --batch base=4 --threads 2   # per part

The baseline is ``attn=eager``, not compiled, of the same preset. Each configuration runs in
its own process so that peak memory (CPU: the process's peak RSS; CUDA: ``max_memory_allocated``)
and compile caches do not mix. On CUDA the steps run under bf16 autocast with fused AdamW.
``--compile`` compiles every transformer block as ``train.compile=true`` does;
``--checkpointing`` also measures ``train.activation_checkpointing=true``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import time
from typing import Any

from benchmarks import harness
from benchmarks.harness import Report

NUM_CONCEPTS = 1000
TEXT_LEN = 30


@dataclasses.dataclass(frozen=True)
class Config:
    """What a step is measured with."""

    preset: str
    attn: str = "sdpa"
    loss_impl: str = "torch"
    compiled: bool = False
    checkpointing: bool = False

    @property
    def label(self) -> str:
        return (f"{self.preset} attn={self.attn} losses={self.loss_impl}" + (" compiled" if self.compiled else "")
                + (" + activation checkpointing" if self.checkpointing else ""))


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(cfg: Config, batch: int, steps: int, warmup: int, device: str, text_len: int = TEXT_LEN,
            count_flops: bool = False, count_saved: bool = False, threads: int = 0,
            compile_mode: str = "default") -> dict[str, Any]:
    """Time ``steps`` training steps of ``cfg`` after ``warmup`` steps; samples/s, peak memory,
    with ``count_flops`` the FLOPs of one step (torch's FlopCounterMode), with ``count_saved``
    the memory autograd keeps for the backward (parameters excluded)."""
    import torch

    from mamo.model.transformer import transformer_blocks

    if threads:
        torch.set_num_threads(threads)
    model = harness.synthetic_model(cfg.preset, NUM_CONCEPTS, cfg.attn, cfg.loss_impl)
    if cfg.checkpointing:
        from mamo.trainer.activation_checkpointing import checkpoint_blocks

        checkpoint_blocks(model)
    model.to(device)
    if cfg.compiled:
        for block in transformer_blocks(model):
            block.compile(mode=compile_mode)
    opt = harness.optimizer(model, device)
    data = harness.synthetic_batch(batch, text_len, model.model_cfg.vision.image_size, NUM_CONCEPTS, device)
    amp, cuda = device.startswith("cuda"), device.startswith("cuda")
    row: dict[str, Any] = {"config": cfg.label, "batch": batch, "steps": steps,
                           "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1)}
    t0 = time.perf_counter()
    for i in range(warmup):
        harness.train_step(model, opt, data, i, amp)
    harness.sync(device)
    row["warmup_s"] = round(time.perf_counter() - t0, 2)  # includes compilation
    if count_flops:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            harness.train_step(model, opt, data, warmup, amp)
        row["flops_per_step"] = float(counter.get_total_flops())
    if count_saved:
        from mamo.trainer.activation_checkpointing import saved_activation_bytes

        saved: list[int] = []

        def forward():
            out, n = saved_activation_bytes(lambda: model(data, generator_seed=0), model)
            saved.append(n)
            return out

        harness.train_step(model, opt, data, 0, amp, forward=forward)
        row["saved_for_backward_MiB"] = round(saved[0] / 2**20, 1)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    loss = float("nan")
    for i in range(steps):
        loss = harness.train_step(model, opt, data, 100 + i, amp)
    harness.sync(device)
    dt = (time.perf_counter() - t0) / steps
    row.update(step_s=round(dt, 4), samples_per_s=batch / dt, final_loss=round(loss, 4),
               peak_MiB=round(torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_mib(), 1),
               peak_kind="cuda max allocated" if cuda else "process max RSS")
    return row


def part_budget(preset: str, batch: int, device: str, text_len: int = 40, threads: int = 0,
                repeats: int = 2) -> dict[str, Any]:
    """Where one pre-training step spends its FLOPs and time: forward per part (teacher, the
    three student passes: unmasked encoders, ITM fusion, masked encoders + fusion for MMM;
    ITC/ITM/MMM heads and losses), then backward and optimizer + EMA. FLOPs from one
    FlopCounterMode over the step (read at each part's start and end), time from the median
    of ``repeats`` steps (synchronised on CUDA), after one warm-up step."""
    import statistics

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mamo.trainer.metrics import _count_cpu_attention

    if threads:
        torch.set_num_threads(threads)
    model = harness.synthetic_model(preset, NUM_CONCEPTS).to(device)
    opt = harness.optimizer(model, device)
    data = harness.synthetic_batch(batch, text_len, model.model_cfg.vision.image_size, NUM_CONCEPTS, device)
    amp = device.startswith("cuda")
    calls: dict[str, int] = {}
    spans: dict[str, list[float]] = {}  # part -> [flops, seconds] of the current step
    counter = FlopCounterMode(display=False)
    _count_cpu_attention()

    def part_of(name: str) -> str:
        n = calls[name] = calls.get(name, 0) + 1
        if name.startswith("momentum."):
            return "teacher (no grad): vision + text + fusion"
        if name in ("enc.vision", "enc.text"):
            return "student pass 1: unmasked vision + text" if n == 1 else "student pass 3: masked vision + text (MMM)"
        if name == "enc.fusion":
            return "student pass 2: fusion on 3B pairs (ITM)" if n == 1 else "student pass 3: fusion (MMM)"
        return "heads: ITM + MMM (implicit, visual, concept)"

    watched = {n: m for n, m in model.named_modules()
               if n in ("momentum.vision", "momentum.text", "momentum.fusion", "enc.vision", "enc.text", "enc.fusion",
                        "itm_head", "implicit_head", "visual_head", "text_head")}
    open_at: dict[str, tuple[str, float, float]] = {}

    def pre(name):
        def hook(module, args):
            harness.sync(device)
            open_at[name] = (part_of(name), counter.get_total_flops(), time.perf_counter())
        return hook

    def post(name):
        def hook(module, args, out):
            harness.sync(device)
            part, f0, t0 = open_at.pop(name)
            acc = spans.setdefault(part, [0.0, 0.0])
            acc[0] += counter.get_total_flops() - f0
            acc[1] += time.perf_counter() - t0
        return hook

    handles = [h for n, m in watched.items() for h in (m.register_forward_pre_hook(pre(n)),
                                                       m.register_forward_hook(post(n)))]
    results: list[dict[str, list[float]]] = []
    for i in range(1 + repeats):
        calls.clear()
        spans.clear()
        with counter:
            harness.sync(device)
            t0 = time.perf_counter()
            f0 = counter.get_total_flops()
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
                out = model(data, generator_seed=i)
            harness.sync(device)
            t1, f1 = time.perf_counter(), counter.get_total_flops()
            out["loss"].backward()
            harness.sync(device)
            t2, f2 = time.perf_counter(), counter.get_total_flops()
            opt.step()
            opt.zero_grad(set_to_none=True)
            model.momentum_update()
            harness.sync(device)
            t3 = time.perf_counter()
        inside = [sum(v[0] for v in spans.values()), sum(v[1] for v in spans.values())]
        spans["losses and glue (ITC, ITM sampling, masking, outside the modules above)"] = [
            (f1 - f0) - inside[0], (t1 - t0) - inside[1]]
        spans["backward (all parts)"] = [f2 - f1, t2 - t1]
        spans["AdamW + EMA update"] = [0.0, t3 - t2]
        if i:  # the first step warms up (allocations, kernel choice)
            results.append({k: list(v) for k, v in spans.items()})
    for h in handles:
        h.remove()
    total_f = sum(v[0] for v in results[0].values())
    parts = {}
    for part in results[0]:
        sec = statistics.median(r[part][1] for r in results)
        parts[part] = {"GFLOP": round(results[0][part][0] / 1e9, 2),
                       "FLOP share %": round(100 * results[0][part][0] / total_f, 1), "ms": round(1e3 * sec, 1)}
    total_s = sum(v["ms"] for v in parts.values()) / 1e3
    for v in parts.values():
        v["time share %"] = round(100 * v["ms"] / 1e3 / total_s, 1)
    return {"preset": preset, "batch": batch, "text_len": text_len, "device": device,
            "TFLOP per step": round(total_f / 1e12, 3), "GFLOP per step": round(total_f / 1e9, 3), "step_s": round(total_s, 3), "parts": parts}


def compare(rep: Report, group: str, configs: list[Config], baseline: Config, count_flops: bool = False,
            isolate: bool = False, **kw: Any) -> list[dict[str, Any]]:
    """Measure ``baseline`` then each config; one report row per config (samples/s, same run).
    ``count_flops``: the baseline's FLOPs per step give every row model TFLOP/s and MFU;
    ``isolate`` runs each configuration in its own process; ``kw`` go to :func:`measure`."""
    measured = {}
    for cfg in [baseline, *[c for c in configs if c != baseline]]:
        spec = {**kw, "count_flops": count_flops and cfg == baseline}
        try:
            measured[cfg] = _child(cfg, spec) if isolate else measure(cfg, **spec)
        except Exception as e:  # noqa: BLE001 - one failing configuration must not lose the others
            rep.error(f"{group} {cfg.label}", e)
        rep.save()
    base = measured.get(baseline)
    flops = (base or {}).get("flops_per_step")
    for cfg, r in measured.items():
        extra = {k: v for k, v in r.items() if k not in ("config", "samples_per_s")}
        if flops:
            extra.update(model_TFLOP_per_s=round(flops / r["step_s"] / 1e12, 1),
                         MFU=round(flops / r["step_s"] / harness.PEAK_BF16_FLOPS, 4))
        rep.row(group, f"{cfg.preset} batch {r['batch']}", cfg.label, r["samples_per_s"], baseline.label,
                base["samples_per_s"] if base else None, "samples/s", **extra)
    return list(measured.values())


def _child(cfg: Config, kw: dict[str, Any]) -> dict[str, Any]:
    spec = json.dumps({"config": dataclasses.asdict(cfg), **kw})
    proc = harness.python(["-m", "benchmarks.model_step", "--child", spec])
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = harness.parser(__doc__)
    ap.add_argument("--presets", default="tiny,small")
    ap.add_argument("--attn", default="eager,sdpa", help="attention impls (eager, sdpa, triton)")
    ap.add_argument("--compile", default="tiny", help="presets also measured with compiled blocks "
                    "(comma list; 'none' for no compiled runs)")
    ap.add_argument("--compile-attn", default="sdpa", help="attention impls measured compiled")
    ap.add_argument("--checkpointing", action="store_true", help="also measure activation checkpointing (sdpa)")
    ap.add_argument("--batch", default="tiny=16,small=4", help="per-preset batch size (default 4)")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default: tiny 8, others 2)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    ap.add_argument("--budget", action="store_true", help="only the FLOP and time budget per part of a "
                    "step (first of --presets, its --batch)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = harness.parse(ap, argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(measure(Config(**spec.pop("config")), **spec)))
        return 0
    if args.smoke:
        args.presets, args.compile, args.batch, args.steps, args.warmup = "micro", "none", "micro=2", 1, 1
        args.checkpointing = True
    batches = dict(kv.split("=") for kv in args.batch.split(","))
    if args.budget:
        preset = args.presets.split(",")[0]
        rep = Report("MAMO train step: budget per part", {"device": args.device, "threads": args.threads}, args.out)
        budget = rep.section("budget", part_budget(preset, int(batches.get(preset, 4)), args.device,
                                                   threads=args.threads, repeats=args.steps or 2))
        for part, v in budget["parts"].items():
            rep.row("budget per part", f"{preset} batch {budget['batch']}", part, v["ms"], unit="ms",
                    GFLOP=v["GFLOP"], flop_share=v["FLOP share %"], time_share=v["time share %"])
        return rep.finish()
    compiled = set() if args.compile == "none" else set(args.compile.split(","))
    rep = Report("MAMO train step (fwd+bwd+AdamW+EMA)", {"device": args.device, "threads": args.threads}, args.out)
    for preset in args.presets.split(","):
        configs = [Config(preset, attn) for attn in args.attn.split(",")]
        configs += [Config(preset, attn, compiled=True) for attn in args.compile_attn.split(",") if preset in compiled]
        if args.checkpointing:
            configs.append(Config(preset, "sdpa", checkpointing=True))
        compare(rep, "train step", configs, Config(preset, "eager"), isolate=not args.smoke,
                batch=int(batches.get(preset, 4)), steps=args.steps or (8 if preset == "tiny" else 2),
                warmup=args.warmup, device=args.device, threads=args.threads)
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
