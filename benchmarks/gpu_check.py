"""One-shot GPU check of kernels/ (and, if present, the DALI loader and `base` training steps).

    python benchmarks/gpu_check.py --out benchmarks/out/gpu_check          # full, < 8 min on an H200
    python benchmarks/gpu_check.py --quick --out benchmarks/out/gpu_quick  # smaller shapes, ~2 min
    python benchmarks/gpu_check.py --plan                                  # print the plan only

Sections, each guarded so that one failure does not lose the others' figures:
  1. correctness: every Triton kernel vs its PyTorch reference on CUDA at MAMO shapes (bf16),
     forward and gradients, plus fp16/fp32 and fully padded rows;
  2. timings (median of CUDA-event timed runs): attention fwd and fwd+bwd vs PyTorch SDPA
     (flash backend without mask; default backend with the key-padding mask) and the eager
     reference; fused linear CE and masked regression vs eager, with peak memory;
  3. the data loader (mamo.data: DALI with nvJPEG "mixed" decode when DALI is installed,
     else the PyTorch fallback) on a freshly generated synthetic version: samples/s;
  4. a few `base` training steps (mamo.model) with SDPA + torch losses, with the Triton
     kernels, and with activation checkpointing: samples/s, MFU (FLOPs counted by torch's
     FlopCounterMode on the SDPA step) and peak memory;
  5. `python -m mamo.train` itself: a short `small` run on the device with a checkpoint, then
     a resume (the trainer's CUDA/bf16 path and GPU checkpoints);
  6. FSDP (train.parallel=fsdp) on the device: a one-rank process group (nccl), the `base`
     model sharded as the trainer does against the same model unsharded, two steps each:
     same losses and weights, optimizer state saved and loaded by name;
  7. the contrastive loss at base shapes (what a fused InfoNCE could save at most), host
     issue time per attention fwd+bwd (Triton vs SDPA), attention under torch.compile
     (mode="reduce-overhead": CUDA graphs) and training steps with compiled blocks.

Writes <out>.json and <out>.md after every section (a timeout keeps what was done).

On a machine without this repo's environment (e.g. a lent GPU with its own torch/Triton), the
tokenizer's vocab.txt may be missing: copy it into the checkout first and pass it, e.g.
    cp "$(python -c 'from concepts.tokenizer import default_vocab_path as p; print(p())')" vocab.txt
    python benchmarks/gpu_check.py --out $OUT/gpu_check --budget-s 300 --vocab vocab.txt
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Default sections, in order of what a short lease must not lose: attention correctness and
# timings, where its time goes, the compiled (CUDA-graph) remedy, then the losses, training
# steps (eager, mamo.train itself, FSDP, then compiled blocks) and the loader. Results are written after each section.
SECTIONS = ("attention", "profile", "attention_compiled", "cross_entropy", "regression", "itc",
            "train", "train_cli", "fsdp", "train_compiled", "data")
# H200 SXM dense bf16 tensor-core peak (vendor datasheet), for MFU.
PEAK_BF16_FLOPS = 989.4e12
# "cuda"; "cpu" only for --cpu-smoke, which runs every code path here at toy sizes.
DEVICE = "cuda"


def sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- plan
def build_plan(quick: bool, smoke: bool = False) -> dict[str, Any]:
    """Shapes and repetition counts; --quick shrinks everything."""
    if smoke:
        return {
            "iters": 2, "warmup": 1,
            "attention": [("smoke", 1, 2, 37, 32, 11, "float32")],
            "attention_extra": [("smoke fp16", 1, 1, 20, 16, 5, "float16")],
            "cross_entropy": [("smoke", 16, 16, 50, "float32")],
            "regression": [("smoke", 20, 16, "smooth_l1", "layer", "float32")],
            "data": {"samples": 32, "batch_size": 8, "image_size": 64, "batches": 2},
            "train": {"preset": "tiny", "batch_size": 4, "text_len": 16, "num_concepts": 50,
                      "warmup_steps": 1, "steps": 1},
            "compile_modes": ["default"],  # CUDA graphs need CUDA
            "itc": {"batch_size": 8, "embed_dim": 32, "queue": 64},
            "train_cli": {"config": "tiny.yaml", "samples": 64, "image_size": 64, "batch_size": 8,
                          "steps": 4, "more_steps": 2},
        }
    b_small, b_big = (16, 32) if quick else (64, 128)
    return {
        "iters": 10 if quick else 30,
        "warmup": 3 if quick else 5,
        # name, B, H, Sq(=Sk), D, text tokens at the end of the sequence (padded), dtype
        "attention": [
            ("fusion 197+40", b_small, 12, 237, 64, 40, "bfloat16"),
            ("fusion 257+40", b_big, 12, 297, 64, 40, "bfloat16"),
            ("vit 257", b_big, 12, 257, 64, 0, "bfloat16"),
            ("text 40", b_big, 12, 40, 64, 40, "bfloat16"),
        ],
        # extra correctness-only cases: other dtypes and head dims
        "attention_extra": [
            ("fp16 d32", 8, 4, 237, 32, 40, "float16"),
            ("fp16 d128", 8, 4, 237, 128, 40, "float16"),
            ("fp32 d64", 4, 4, 101, 64, 40, "float32"),
        ],
        # name, N rows, D, V, dtype
        "cross_entropy": [
            ("concepts 10k", 2048 if quick else 8192, 768, 10000, "bfloat16"),
            ("mlm 30522", 2048 if quick else 8192, 768, 30522, "bfloat16"),
        ],
        # name, N rows, D, kind, target_norm, dtype
        "regression": [
            ("implicit smooth_l1/layer", b_big * 297, 768, "smooth_l1", "layer", "bfloat16"),
            ("visual cosine/l2", b_big * 257, 768, "cosine", "l2", "bfloat16"),
        ],
        "data": {"samples": 512 if quick else 2048, "batch_size": 64, "image_size": 256,
                 "batches": 6 if quick else 20},
        "train": {"preset": "base", "batch_size": 16 if quick else 64, "text_len": 40,
                  "num_concepts": 2000, "warmup_steps": 2, "steps": 3 if quick else 6},
        "compile_modes": ["reduce-overhead"],
        "itc": {"batch_size": 64, "embed_dim": 256, "queue": 65536},  # METHOD.md base defaults
        "train_cli": {"config": "small.yaml", "samples": 1024, "image_size": 224, "batch_size": 64,
                      "steps": 40, "more_steps": 10},
    }


def print_plan(plan: dict[str, Any], args: argparse.Namespace) -> None:
    print("gpu_check plan" + (" (--quick)" if args.quick else ""))
    print(f"  timing: median of {plan['iters']} CUDA-event timed runs after {plan['warmup']} warm-ups")
    for name, B, H, S, D, T, dt in plan["attention"]:
        print(f"  attention  {name:16s} B={B} H={H} S={S} D={D} text(padded)={T} {dt}: "
              "check fwd+grads vs reference; time triton / sdpa / eager")
    for name, B, H, S, D, T, dt in plan["attention_extra"]:
        print(f"  attention  {name:16s} B={B} H={H} S={S} D={D} {dt}: check only")
    for name, N, D, V, dt in plan["cross_entropy"]:
        print(f"  linear CE  {name:16s} N={N} D={D} V={V} {dt}: check; time + peak memory vs eager")
    for name, N, D, kind, norm, dt in plan["regression"]:
        print(f"  regression {name:24s} N={N} D={D} {dt}: check; time vs eager")
    d = plan["data"]
    print(f"  data       {d['samples']} synthetic samples at {d['image_size']} px, batch "
          f"{d['batch_size']}, {d['batches']} batches (sections: {'data' in args.sections})")
    t = plan["train"]
    print(f"  train      preset {t['preset']}, batch {t['batch_size']}, {t['steps']} timed steps "
          f"(sdpa+torch losses, then triton+kernels) (sections: {'train' in args.sections})")
    c = plan["train_cli"]
    print(f"  train_cli  python -m mamo.train --config configs/{c['config']}: {c['steps']} steps at "
          f"{c['image_size']} px batch {c['batch_size']}, then --resume to {c['steps'] + c['more_steps']} "
          f"(sections: {'train_cli' in args.sections})")
    c = plan["itc"]
    print(f"  itc        B={c['batch_size']} E={c['embed_dim']} queue={c['queue']}: torch contrastive loss "
          f"fwd+bwd time + peak memory (bounds what a fused InfoNCE could save) (sections: {'itc' in args.sections})")
    print(f"  profile    host issue time per attention fwd+bwd, Triton vs the model's SDPA path "
          f"(sections: {'profile' in args.sections})")
    print(f"  compiled   attention fwd+bwd under torch.compile mode(s) {plan['compile_modes']}, Triton vs "
          f"SDPA (sections: {'attention_compiled' in args.sections}); train steps with compiled blocks "
          f"(sections: {'train_compiled' in args.sections})")
    t = plan["train"]
    print(f"  fsdp       preset {t['preset']}, batch {min(8, t['batch_size'])}: 2 steps FSDP (1 rank) vs unsharded, "
          f"same losses/weights; optimizer state by name (sections: {'fsdp' in args.sections})")
    print(f"  time budget {args.budget_s:.0f} s; output {args.out}.json / .md")


# ----------------------------------------------------------------------------- helpers
class Report:
    def __init__(self, out: Path, meta: dict[str, Any]):
        self.out = out
        self.data: dict[str, Any] = {"meta": meta, "checks": [], "timings": [], "data": None,
                                     "train": None, "errors": []}

    def check(self, **row: Any) -> None:
        print("  check", json.dumps(row))
        self.data["checks"].append(row)

    def timing(self, **row: Any) -> None:
        print("  time ", json.dumps(row))
        self.data["timings"].append(row)

    def error(self, section: str, exc: BaseException) -> None:
        tb = traceback.format_exc(limit=6)
        print(f"  ERROR in {section}: {exc!r}\n{tb}")
        self.data["errors"].append({"section": section, "error": repr(exc), "traceback": tb})

    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{self.out}.json").write_text(json.dumps(self.data, indent=1, default=str))
        Path(f"{self.out}.md").write_text(render_markdown(self.data))


def render_markdown(d: dict[str, Any]) -> str:
    m = d["meta"]
    lines = [f"# gpu_check: {m.get('gpu')}", "",
             f"torch {m.get('torch')}, triton {m.get('triton')}, CUDA {m.get('cuda')}, "
             f"command `{m.get('command')}`, {m.get('date')}", ""]
    if d["checks"]:
        lines += ["## Correctness (Triton vs PyTorch reference on CUDA)", "",
                  "| kernel | case | dtype | max rel err (out / grads) | ok |", "|---|---|---|---|---|"]
        for c in d["checks"]:
            lines.append(f"| {c['kernel']} | {c['case']} | {c.get('dtype', '')} | "
                         f"{c['err_out']:.2e} / {c['err_grad']:.2e} | {'yes' if c['ok'] else 'NO'} |")
        lines.append("")
    if d["timings"]:
        lines += ["## Timings (median, ms; ratio = baseline / triton, >1 means Triton is faster)", "",
                  "| kernel | case | pass | triton ms | baseline | baseline ms | ratio | triton TFLOP/s | peak MiB triton / baseline |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for t in d["timings"]:
            tf = f"{t['tflops']:.0f}" if t.get("tflops") else ""
            mem = (f"{t['peak_mib']:.0f} / {t['base_peak_mib']:.0f}"
                   if t.get("peak_mib") is not None and t.get("base_peak_mib") is not None else "")
            lines.append(f"| {t['kernel']} | {t['case']} | {t['pass']} | {t['ms']:.3f} | {t['baseline']} | "
                         f"{t['base_ms']:.3f} | {t['base_ms'] / t['ms']:.2f} | {tf} | {mem} |")
        lines.append("")
    for key, title in (("data", "Data loader"), ("train", "Training steps"),
                       ("train_cli", "python -m mamo.train (run + resume)"),
                       ("itc", "Contrastive loss (torch, fwd+bwd)"),
                       ("train_compiled", "Training steps, compiled blocks"),
                       ("fsdp", "FSDP, one rank vs unsharded")):
        if d.get(key):
            lines += [f"## {title}", "", "```", json.dumps(d[key], indent=1), "```", ""]
    if d.get("launch_overhead"):
        lines += ["## Host time per call (us)", "", "| what | us |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in d["launch_overhead"].items()] + [""]
    if d.get("profile"):
        lines += ["## Host issue time per attention fwd+bwd (ms)", "",
                  "| shape | triton issue | triton wall | sdpa issue | sdpa wall |", "|---|---|---|---|---|"]
        for r in d["profile"]:
            lines.append(f"| {r['shape']} | {r['issue_ms']:.3f} | {r['wall_ms']:.3f} | "
                         f"{r.get('sdpa_issue_ms', float('nan')):.3f} | {r.get('sdpa_wall_ms', float('nan')):.3f} |")
        lines.append("")
    if d["errors"]:
        lines += ["## Errors", ""] + [f"- {e['section']}: `{e['error']}`" for e in d["errors"]] + [""]
    return "\n".join(lines)


def cuda_time_ms(fn: Callable[[], Any], iters: int, warmup: int) -> float:
    import torch

    for _ in range(warmup):
        fn()
    if DEVICE != "cuda":
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


def peak_mib(fn: Callable[[], Any]) -> float | None:
    import torch

    if DEVICE != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def rel_err(a, b) -> float:
    a, b = a.detach().float(), b.detach().float()
    if not (a.isfinite().all() and b.isfinite().all()):
        return float("inf") if not a.isfinite().all() else float("nan")
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-6))


TOL = {"bfloat16": 3e-2, "float16": 5e-3, "float32": 1e-4}


# ----------------------------------------------------------------------------- attention
def padding_mask(B: int, S: int, text: int, device):
    """Image keys first (never padded), then `text` text keys of random valid length >= 1."""
    import torch

    mask = torch.zeros(B, S, dtype=torch.bool, device=device)
    if text:
        lengths = torch.randint(1, text + 1, (B,), device=device)
        pos = torch.arange(text, device=device)
        mask[:, S - text:] = pos[None, :] >= lengths[:, None]
    return mask


def attention_inputs(B: int, H: int, S: int, D: int, T: int, dtype):
    """q, k, v ([B, H, S, D], requiring grad) and the key-padding mask (None when T = 0)."""
    import torch

    dev = torch.device(DEVICE)
    q, k, v = (torch.randn(B, H, S, D, device=dev, dtype=dtype, requires_grad=True) for _ in range(3))
    return q, k, v, (padding_mask(B, S, T, dev) if T else None)


def attention_section(rep: Report, plan: dict[str, Any], deadline: float) -> None:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from kernels.attention import attention_reference, fused_attention

    dev = torch.device(DEVICE)

    def check(name, B, H, S, D, T, dt, fully_padded=False):
        dtype = getattr(torch, dt)
        q, k, v, mask = attention_inputs(B, H, S, D, T, dtype)
        if fully_padded:
            mask = padding_mask(B, S, T, dev)
            mask[0] = True  # every key of element 0 is padding
        do = torch.randn(B, H, S, D, device=dev, dtype=dtype)
        out = fused_attention(q, k, v, mask, impl="triton")
        grads = torch.autograd.grad(out, (q, k, v), do)
        ref = attention_reference(q.float(), k.float(), v.float(), mask)
        ref_grads = torch.autograd.grad(ref, (q, k, v), do.float())
        e_out = rel_err(out, ref)
        e_grad = max(rel_err(g, r) for g, r in zip(grads, ref_grads))
        ok = e_out < TOL[dt] and e_grad < 2 * TOL[dt]
        if fully_padded:
            ok = ok and bool(out[0].eq(0).all()) and all(bool(g[0].eq(0).all()) for g in grads)
        rep.check(kernel="attention", case=name + (" +fully padded row" if fully_padded else ""),
                  dtype=dt, err_out=e_out, err_grad=e_grad, ok=ok)

    for case in plan["attention"] + plan["attention_extra"]:
        if time.time() > deadline:
            break
        try:
            check(*case)
        except Exception as e:  # noqa: BLE001
            rep.error(f"attention check {case[0]}", e)
    try:
        check("fusion small", 4, 4, 237, 64, 40, "bfloat16", fully_padded=True)
    except Exception as e:  # noqa: BLE001
        rep.error("attention check fully padded", e)
    rep.save()

    iters, warmup = plan["iters"], plan["warmup"]
    for name, B, H, S, D, T, dt in plan["attention"]:
        if time.time() > deadline:
            rep.data["errors"].append({"section": "attention timing", "error": "skipped: time budget"})
            break
        try:
            dtype = getattr(torch, dt)
            q, k, v, mask = attention_inputs(B, H, S, D, T, dtype)
            do = torch.randn_like(q)
            flops_fwd = 4.0 * B * H * S * S * D
            keep = None if mask is None else ~mask[:, None, None, :]

            def tri():
                return fused_attention(q, k, v, mask, impl="triton")

            def sdpa_flash():
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    return F.scaled_dot_product_attention(q, k, v)

            def sdpa_masked():
                return F.scaled_dot_product_attention(q, k, v, attn_mask=keep)

            def eager():
                return attention_reference(q, k, v, mask)

            baselines = [("sdpa flash (no mask)", sdpa_flash)]
            if mask is not None:
                baselines.append(("sdpa + mask", sdpa_masked))
            baselines.append(("eager reference", eager))
            for pass_name, mult in (("fwd", 1.0), ("fwd+bwd", 3.5)):
                def run(f):
                    def fwd():
                        with torch.no_grad():
                            return f()

                    def fwd_bwd():
                        return torch.autograd.grad(f(), (q, k, v), do)

                    return fwd if pass_name == "fwd" else fwd_bwd

                ms = cuda_time_ms(run(tri), iters, warmup)
                for base_name, base_fn in baselines:
                    try:
                        base_ms = cuda_time_ms(run(base_fn), iters, warmup)
                    except Exception as e:  # noqa: BLE001
                        rep.error(f"attention baseline {base_name} {name}", e)
                        continue
                    rep.timing(kernel="attention", case=f"{name} B{B} H{H} S{S} D{D} {dt}",
                               **{"pass": pass_name}, ms=ms, baseline=base_name,
                               base_ms=base_ms, tflops=flops_fwd * mult / (ms * 1e-3) / 1e12,
                               base_tflops=flops_fwd * mult / (base_ms * 1e-3) / 1e12)
        except Exception as e:  # noqa: BLE001
            rep.error(f"attention timing {name}", e)
        rep.save()


def attention_compiled_section(rep: Report, plan: dict[str, Any], deadline: float) -> None:
    """fwd+bwd under torch.compile, Triton (custom ops) vs SDPA, in each compile mode of the
    plan: "reduce-overhead" captures CUDA graphs, which removes the per-launch host cost
    that makes eager Triton lose at small shapes."""
    import torch
    import torch._dynamo
    import torch.nn.functional as F

    from kernels.attention import fused_attention

    iters, warmup = plan["iters"], plan["warmup"]
    for mode in plan["compile_modes"]:
        for name, B, H, S, D, T, dt in plan["attention"]:
            if time.time() > deadline:
                rep.data["errors"].append({"section": "attention compiled", "error": "skipped: time budget"})
                return
            try:
                q, k, v, mask = attention_inputs(B, H, S, D, T, getattr(torch, dt))
                keep = None if mask is None else ~mask[:, None, None, :]
                do = torch.randn_like(q)
                torch._dynamo.reset()
                tri = torch.compile(lambda q, k, v, m: fused_attention(q, k, v, m, impl="triton"),
                                    mode=mode, fullgraph=True)
                sdpa = torch.compile(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
                                     mode=mode, fullgraph=True)
                t0 = time.time()
                out = tri(q, k, v, mask)
                compile_s = time.time() - t0
                ok_err = rel_err(out, fused_attention(q, k, v, mask, impl="triton"))
                ms = cuda_time_ms(lambda: torch.autograd.grad(tri(q, k, v, mask), (q, k, v), do),
                                  iters, warmup)
                base_ms = cuda_time_ms(lambda: torch.autograd.grad(sdpa(q, k, v, keep), (q, k, v), do),
                                       iters, warmup)
                rep.timing(kernel="attention compiled", case=f"{name} B{B} H{H} S{S} D{D} {dt} [{mode}]",
                           **{"pass": "fwd+bwd"}, ms=ms, baseline=f"sdpa{' + mask' if T else ''} compiled",
                           base_ms=base_ms, tflops=4.0 * B * H * S * S * D * 3.5 / (ms * 1e-3) / 1e12,
                           compile_s=round(compile_s, 1), err_vs_eager=ok_err)
            except Exception as e:  # noqa: BLE001
                rep.error(f"attention compiled {name} [{mode}]", e)
            rep.save()
    torch._dynamo.reset()


def itc_section(rep: Report, plan: dict[str, Any]) -> None:
    """The contrastive loss as the model computes it (mamo.objectives.itc_loss: batch + queue,
    momentum distillation): time and peak memory of fwd+bwd. It decides whether the optional
    fused InfoNCE kernel could pay: its share of a `base` step is the most it could save."""
    import torch
    import torch.nn.functional as F

    from mamo.objectives.itc import FeatureQueue, itc_loss

    c = plan["itc"]
    dev = torch.device(DEVICE)
    B, E, Q = c["batch_size"], c["embed_dim"], c["queue"]
    queue = FeatureQueue(E, Q).to(dev)  # random unit vectors, as at the start of training
    img = F.normalize(torch.randn(B, E, device=dev), dim=1).requires_grad_(True)
    txt = F.normalize(torch.randn(B, E, device=dev), dim=1).requires_grad_(True)
    img_m, txt_m = img.detach().clone(), txt.detach().clone()
    temp = torch.tensor(0.07, device=dev, requires_grad=True)

    def fwd_bwd():
        with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=DEVICE == "cuda"):
            loss, _, _ = itc_loss(img, txt, img_m, txt_m, queue, temp, alpha=0.4)
        return torch.autograd.grad(loss, (img, txt, temp))

    ms = cuda_time_ms(fwd_bwd, plan["iters"], plan["warmup"])
    mib = peak_mib(fwd_bwd)
    rep.data["itc"] = {"batch_size": B, "embed_dim": E, "queue": Q, "fwd_bwd_ms": ms,
                       "peak_mib": mib}
    print("  itc", rep.data["itc"])


# ----------------------------------------------------------------------------- losses
def cross_entropy_section(rep: Report, plan: dict[str, Any], deadline: float) -> None:
    import torch
    import torch.nn.functional as F

    from kernels.cross_entropy import fused_linear_cross_entropy, linear_cross_entropy_reference

    dev = torch.device(DEVICE)
    for name, N, D, V, dt in plan["cross_entropy"]:
        if time.time() > deadline:
            break
        try:
            dtype = getattr(torch, dt)
            h = torch.randn(N, D, device=dev, dtype=dtype, requires_grad=True)
            w = (torch.randn(V, D, device=dev) / math.sqrt(D)).to(dtype).requires_grad_(True)
            b = torch.zeros(V, device=dev, dtype=dtype, requires_grad=True)
            labels = torch.randint(0, V, (N,), device=dev)
            labels[torch.rand(N, device=dev) < 0.2] = -100
            params = (h, w, b)

            loss = fused_linear_cross_entropy(h, w, b, labels, impl="triton")
            grads = torch.autograd.grad(loss, params)
            hf, wf, bf = (t.detach().float().requires_grad_(True) for t in params)
            ref = linear_cross_entropy_reference(hf, wf, bf, labels)
            ref_grads = torch.autograd.grad(ref, (hf, wf, bf))
            e_out = rel_err(loss, ref)
            e_grad = max(rel_err(g, r) for g, r in zip(grads, ref_grads))
            rep.check(kernel="linear CE", case=f"{name} N{N} V{V}", dtype=dt, err_out=e_out,
                      err_grad=e_grad, ok=e_out < 1e-2 and e_grad < 5e-2)
            del ref_grads, hf, wf, bf

            def fused():
                return torch.autograd.grad(fused_linear_cross_entropy(h, w, b, labels, impl="triton"), params)

            def eager():
                logits = F.linear(h, w, b)
                return torch.autograd.grad(F.cross_entropy(logits.float(), labels, ignore_index=-100), params)

            ms = cuda_time_ms(fused, plan["iters"], plan["warmup"])
            base_ms = cuda_time_ms(eager, plan["iters"], plan["warmup"])
            rep.timing(kernel="linear CE", case=f"{name} N{N} D{D} V{V} {dt}", **{"pass": "fwd+bwd"},
                       ms=ms, baseline="eager F.linear + F.cross_entropy(fp32 logits)", base_ms=base_ms,
                       peak_mib=peak_mib(fused), base_peak_mib=peak_mib(eager))
        except Exception as e:  # noqa: BLE001
            rep.error(f"cross entropy {name}", e)
        rep.save()


def regression_section(rep: Report, plan: dict[str, Any], deadline: float) -> None:
    import torch

    from kernels.regression import masked_regression_loss, masked_regression_reference

    dev = torch.device(DEVICE)
    for name, N, D, kind, norm, dt in plan["regression"]:
        if time.time() > deadline:
            break
        try:
            dtype = getattr(torch, dt)
            pred = torch.randn(N, D, device=dev, dtype=dtype, requires_grad=True)
            target = torch.randn(N, D, device=dev, dtype=dtype)
            mask = torch.rand(N, device=dev) < 0.4
            loss = masked_regression_loss(pred, target, mask, kind, 1.0, norm, impl="triton")
            (grad,) = torch.autograd.grad(loss, pred)
            pf = pred.detach().float().requires_grad_(True)
            ref = masked_regression_reference(pf, target, mask, kind, 1.0, norm)
            (ref_grad,) = torch.autograd.grad(ref, pf)
            e_out, e_grad = rel_err(loss, ref), rel_err(grad, ref_grad)
            rep.check(kernel="masked regression", case=f"{name} N{N}", dtype=dt, err_out=e_out,
                      err_grad=e_grad, ok=e_out < 1e-2 and e_grad < 2e-2)

            def fused():
                return torch.autograd.grad(masked_regression_loss(pred, target, mask, kind, 1.0, norm,
                                                                  impl="triton"), pred)

            def eager():
                return torch.autograd.grad(masked_regression_reference(pred, target, mask, kind, 1.0, norm),
                                           pred)

            ms = cuda_time_ms(fused, plan["iters"], plan["warmup"])
            base_ms = cuda_time_ms(eager, plan["iters"], plan["warmup"])
            rep.timing(kernel="masked regression", case=f"{name} N{N} D{D} {dt}", **{"pass": "fwd+bwd"},
                       ms=ms, baseline="eager reference", base_ms=base_ms,
                       peak_mib=peak_mib(fused), base_peak_mib=peak_mib(eager))
        except Exception as e:  # noqa: BLE001
            rep.error(f"regression {name}", e)
        rep.save()


def host_time_ms(fn: Callable[[], Any], n: int, warmup: int) -> tuple[float, float]:
    """(host issue, wall) milliseconds per call: the loop's time before and after the final
    synchronisation; with an idle GPU queue the first is what the host spends per call."""
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    issue = (time.perf_counter() - t0) / n * 1e3
    sync()
    return issue, (time.perf_counter() - t0) / n * 1e3


def profile_section(rep: Report, plan: dict[str, Any]) -> None:
    """Where the time of one Triton attention fwd+bwd goes (torch.profiler), small and large."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from kernels.attention import fused_attention
    from mamo.model.attention import attention

    dev = torch.device(DEVICE)
    rows = []
    shapes = ((128, 40, 40), (128, 297, 40)) if DEVICE == "cuda" else ((1, 20, 5),)
    for B, S, T in shapes:
        q, k, v = (torch.randn(B, 12, S, 64, device=dev, dtype=torch.bfloat16, requires_grad=True)
                   for _ in range(3))
        mask = padding_mask(B, S, T, dev)
        do = torch.randn_like(q)

        def step():
            return torch.autograd.grad(fused_attention(q, k, v, mask, impl="triton"), (q, k, v), do)

        def sdpa_step():
            out = attention(q, k, v, mask, "sdpa")  # the model's masked SDPA path
            return torch.autograd.grad(out, (q, k, v), do)

        cpu_issue, wall = host_time_ms(step, 20, 3)
        sdpa_issue, sdpa_wall = host_time_ms(sdpa_step, 20, 3)
        print(f"  profile B{B} S{S}: host issue per fwd+bwd triton {cpu_issue:.3f} ms (wall "
              f"{wall:.3f}) vs sdpa {sdpa_issue:.3f} ms (wall {sdpa_wall:.3f})")
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEVICE == "cuda" else [])
        with profile(activities=acts) as prof:
            for _ in range(5):
                step()
            sync()
        table = prof.key_averages().table(sort_by="self_cuda_time_total" if DEVICE == "cuda"
                                          else "self_cpu_time_total", row_limit=14)
        print(table)
        rows.append({"shape": f"B{B} H12 S{S} D64 bf16", "issue_ms": cpu_issue, "wall_ms": wall,
                     "sdpa_issue_ms": sdpa_issue, "sdpa_wall_ms": sdpa_wall, "table": table})
    rep.data["profile"] = rows
    try:
        rep.data["launch_overhead"] = launch_overhead(300 if DEVICE == "cuda" else 2)
        print("  launch overhead (host us per call):", json.dumps(rep.data["launch_overhead"]))
    except Exception as e:  # noqa: BLE001
        rep.error("launch overhead", e)


def launch_overhead(n: int = 300) -> dict[str, float]:
    """Host microseconds per call: empty Triton kernels with 1 and 17 arguments, the attention
    wrappers without their launches, and a whole eager fwd+bwd, beside SDPA's. Splits the
    small-shape cost into Triton's launch path and ours."""
    import torch
    import triton

    from kernels.attention import fused_attention
    from kernels.tuning import recording_launches
    from mamo.model.attention import attention

    @triton.jit
    def empty1(X):
        pass

    @triton.jit
    def empty17(X, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16):
        pass

    dev = torch.device(DEVICE)
    x = torch.zeros(16, device=dev)

    def per_call(fn, n=n) -> float:
        return round(host_time_ms(fn, n, min(n, 10))[0] * 1e3, 2)

    q, k, v = (torch.randn(4, 12, 40, 64, device=dev, dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    mask = padding_mask(4, 40, 40, dev)
    do = torch.randn_like(q)

    def tri_fwd_bwd():
        return torch.autograd.grad(fused_attention(q, k, v, mask, impl="triton"), (q, k, v), do)

    def wrappers_only():
        with recording_launches():
            return tri_fwd_bwd()

    out = {}
    if DEVICE == "cuda":
        out["empty kernel, 1 arg"] = per_call(lambda: empty1[(1,)](x))
        out["empty kernel, 17 args"] = per_call(lambda: empty17[(1,)](x, *range(1, 17)))
    # no launches, so cheap on any device: always 300 calls
    out["attention fwd+bwd, wrappers without launches"] = per_call(wrappers_only, 300)
    out["attention fwd+bwd, triton (2 launches)"] = per_call(tri_fwd_bwd)

    out["attention fwd+bwd, sdpa (model path)"] = per_call(
        lambda: torch.autograd.grad(attention(q, k, v, mask, "sdpa"), (q, k, v), do))
    return out


def ce_sweep_section(rep: Report, plan: dict[str, Any]) -> None:
    """Fused CE time and peak memory against chunk size (rows per logits buffer)."""
    import torch

    from kernels.cross_entropy import fused_linear_cross_entropy

    dev = torch.device(DEVICE)
    N, D, V = (8192, 768, 30522) if DEVICE == "cuda" else (16, 16, 50)
    h = torch.randn(N, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
    w = (torch.randn(V, D, device=dev) / math.sqrt(D)).to(torch.bfloat16).requires_grad_(True)
    b = torch.zeros(V, device=dev, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, V, (N,), device=dev)
    rows = []
    for chunk in (256, 549, 1024, 2048, 4096, 8192):
        def fused():
            return torch.autograd.grad(
                fused_linear_cross_entropy(h, w, b, labels, impl="triton", chunk_rows=chunk), (h, w, b))

        ms = cuda_time_ms(fused, plan["iters"], plan["warmup"])
        row = {"N": N, "D": D, "V": V, "chunk_rows": chunk, "ms": ms, "peak_mib": peak_mib(fused)}
        print("  ce sweep", row)
        rows.append(row)
    rep.data["ce_sweep"] = rows


# ----------------------------------------------------------------------------- data + train
def data_section(rep: Report, plan: dict[str, Any], args: argparse.Namespace) -> None:
    import torch

    d = plan["data"]
    result: dict[str, Any] = {}
    rep.data["data"] = result
    try:
        import nvidia.dali  # noqa: F401
        backend = "dali"
        result["dali"] = getattr(nvidia.dali, "__version__", "?")
    except Exception as e:  # noqa: BLE001
        backend = "torch"
        result["dali"] = f"not importable ({e!r}); measuring the PyTorch fallback instead"
    if args.vocab:
        import concepts.tokenizer as tk

        tk.default_vocab_path = lambda: Path(args.vocab)  # noqa: E731
    from ingest.synthetic import SyntheticConfig
    from ingest.synthetic_version import write_synthetic_version
    from mamo.data import DataConfig, build_loader

    root = Path(tempfile.mkdtemp(prefix="gpu_check_data_"))
    t0 = time.time()
    write_synthetic_version(root, "synthetic", "v1",
                            SyntheticConfig(n=d["samples"], seed=0, image_size=d["image_size"]),
                            512, overwrite=True, progress=False)
    result["generate_s"] = round(time.time() - t0, 1)
    cfg = DataConfig(version_dir=root / "synthetic" / "v1", vocab_id="none", image_size=d["image_size"],
                     batch_size=d["batch_size"], backend=backend,
                     decode="mixed" if backend == "dali" and DEVICE == "cuda" else "auto",
                     num_threads=min(8, os.cpu_count() or 2), num_workers=min(8, os.cpu_count() or 2))
    loader = build_loader(cfg, "train")
    result.update(backend=backend, decode=cfg.decode, batch_size=d["batch_size"])
    it = iter(loader)
    next(it)  # start-up (pipeline build, workers)
    sync()
    n, t0 = 0, time.time()
    for _ in range(d["batches"]):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        img = batch["image"]
        if img.device.type != DEVICE:
            img = img.to(DEVICE, non_blocking=True)
        n += img.shape[0]
    sync()
    dt = time.time() - t0
    result.update(samples=n, seconds=round(dt, 3), samples_per_s=round(n / dt, 1),
                  image_device=str(batch["image"].device))


def train_cli_section(rep: Report, plan: dict[str, Any], args: argparse.Namespace) -> None:
    """`python -m mamo.train` itself on this device (its CUDA/bf16 path, GPU checkpoints):
    a short run with a checkpoint on synthetic data, then `--resume` to a later step. Token MLM
    instead of concepts (no spaCy needed), PyTorch loader (DALI may be missing)."""
    import mamo.train as train_cli
    from ingest.synthetic import SyntheticConfig
    from ingest.synthetic_version import write_synthetic_version

    c = plan["train_cli"]
    if args.vocab:
        import concepts.tokenizer as tk

        tk.default_vocab_path = lambda: Path(args.vocab)  # noqa: E731
    root = Path(tempfile.mkdtemp(prefix="gpu_check_train_cli_"))
    write_synthetic_version(root, "synthetic", "v1",
                            SyntheticConfig(n=c["samples"], seed=0, image_size=c["image_size"]),
                            512, overwrite=True, progress=False)
    run_dir = root / "run"
    common = ["--config", str(ROOT / "configs" / c["config"]), "--run-dir", str(run_dir), "--no-progress",
              f"data.version_dir={root / 'synthetic' / 'v1'}", "data.vocab_id=none",
              "loss.text_target=mlm", "data.backend=torch", f"data.image_size={c['image_size']}",
              f"data.batch_size={c['batch_size']}", "model.text_init=null", f"train.device={DEVICE}",
              f"train.ckpt_every={c['steps']}", "optim.warmup_steps=5"]
    result: dict[str, Any] = {"config": c["config"], "batch_size": c["batch_size"],
                              "image_size": c["image_size"]}
    rep.data["train_cli"] = result
    t0 = time.time()
    result["rc_first"] = train_cli.main(common + [f"train.steps={c['steps']}"])
    result["first_s"] = round(time.time() - t0, 1)
    t0 = time.time()
    result["rc_resume"] = train_cli.main(common + [f"train.steps={c['steps'] + c['more_steps']}", "--resume"])
    result["resume_s"] = round(time.time() - t0, 1)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in rows]
    late = [r["samples_per_s"] for r in rows[len(rows) // 2:]]
    result.update(steps_logged=len(rows), last_step=steps[-1] if steps else None,
                  samples_per_s_median=round(statistics.median(late), 1) if late else None,
                  final_loss=rows[-1].get("loss") if rows else None,
                  checkpoints=sorted(p.name for p in (run_dir / "checkpoints").iterdir()
                                     if not p.name.startswith(".")))
    total = c["steps"] + c["more_steps"]
    ok = (result["rc_first"] == 0 and result["rc_resume"] == 0 and steps == list(range(1, total + 1))
          and all(math.isfinite(r.get("loss", float("nan"))) for r in rows))
    rep.check(kernel="mamo.train", case=f"{c['config']} {DEVICE}: {c['steps']} steps, resume to {total}",
              dtype="bf16 autocast" if DEVICE == "cuda" else "fp32", err_out=0.0, err_grad=0.0, ok=ok)
    print("  train_cli", json.dumps(result))


def train_section(rep: Report, plan: dict[str, Any], compiled: bool = False,
                  deadline: float = math.inf) -> None:
    """`base` steps, eager; with ``compiled`` the blocks are torch.compiled as
    `train.compile=true` does (mamo.trainer.parallelize.compile_blocks, default mode)."""
    import torch

    from mamo.model import MAMO, LossConfig, ModelConfig
    from mamo.trainer.parallelize import compile_blocks

    if time.time() > deadline:
        rep.data["errors"].append({"section": "train_compiled" if compiled else "train",
                                   "error": "skipped: time budget"})
        return
    t = plan["train"]
    dev = torch.device(DEVICE)
    result: dict[str, Any] = {"preset": t["preset"], "batch_size": t["batch_size"],
                              "autocast": "bf16", "optimizer": "AdamW(fused)",
                              "compiled_blocks": compiled}
    rep.data["train_compiled" if compiled else "train"] = result
    mcfg = ModelConfig(preset=t["preset"], attn_impl="sdpa", text_init=None)
    lcfg = LossConfig(loss_impl="torch")
    model = MAMO(mcfg, lcfg, num_concepts=t["num_concepts"], load_pretrained=False).to(dev).train()
    params = [p for p in model.parameters() if p.requires_grad]
    result["params_trainable_M"] = round(sum(p.numel() for p in params) / 1e6, 1)
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.02, fused=DEVICE == "cuda")
    if compiled:
        result["blocks_compiled"] = compile_blocks(model)
    B, L, S = t["batch_size"], t["text_len"], mcfg.vision.image_size
    lengths = torch.randint(8, L + 1, (B,), device=dev)
    am = (torch.arange(L, device=dev)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1000, 30000, (B, L), device=dev) * am
    ids[:, 0] = 101
    ids[torch.arange(B, device=dev), lengths - 1] = 102
    labels = torch.randint(0, t["num_concepts"], (B, L), device=dev)
    labels[(torch.rand(B, L, device=dev) < 0.6) | (am == 0)] = -100
    batch = {"image": torch.randn(B, 3, S, S, device=dev), "input_ids": ids,
             "attention_mask": am, "concept_labels": labels}

    def step(i: int) -> None:
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            out = model(batch, generator_seed=i)
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.momentum_update()

    try:
        from torch.utils.flop_counter import FlopCounterMode

        t_first = time.time()
        step(0)
        result["first_step_s"] = round(time.time() - t_first, 1)  # includes compilation
        with FlopCounterMode(display=False) as counter:
            step(1)
        result["flops_per_step"] = float(counter.get_total_flops())
    except Exception as e:  # noqa: BLE001
        rep.error("train flop count", e)
    rows = [("sdpa + torch losses", "sdpa", "torch"), ("triton attention + fused losses", "triton", "kernels")]
    if not compiled:  # last: the blocks stay wrapped (train.activation_checkpointing=true)
        rows.append(("sdpa + torch losses + activation checkpointing", "sdpa", "torch"))
    for label, attn, loss_impl in rows:
        try:
            if label.endswith("activation checkpointing"):
                from mamo.trainer.activation_checkpointing import checkpoint_blocks

                checkpoint_blocks(model)
            model.set_attn_impl(attn)
            model.loss_cfg.loss_impl = loss_impl
            t_warm = time.time()
            for i in range(t["warmup_steps"]):
                step(100 + i)
            sync()
            if DEVICE == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t0 = time.time()
            for i in range(t["steps"]):
                step(200 + i)
            sync()
            sec = (time.time() - t0) / t["steps"]
            row = {"step_s": round(sec, 4), "samples_per_s": round(B / sec, 1),
                   "warmup_s": round(t0 - t_warm, 1)}
            if DEVICE == "cuda":
                row["peak_mem_GiB"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            if result.get("flops_per_step"):
                row["model_TFLOP_per_s"] = round(result["flops_per_step"] / sec / 1e12, 1)
                row["MFU"] = round(result["flops_per_step"] / sec / PEAK_BF16_FLOPS, 4)
            result[label] = row
            print("  train", label, row)
        except Exception as e:  # noqa: BLE001
            rep.error(f"train {label}", e)
        rep.save()


def fsdp_section(rep: Report, plan: dict[str, Any], deadline: float = math.inf) -> None:
    """The trainer's FSDP path on this device with one rank (nccl on CUDA): the model sharded
    by mamo.trainer.fsdp.shard_model (online and teacher) against an unsharded copy, two
    steps each (AdamW, clipping, EMA update); then the full state gathered for a checkpoint
    and the optimizer state round-tripped by name, as mamo.train does."""
    import copy
    import socket

    import torch
    import torch.distributed as dist

    from mamo.model import MAMO, LossConfig, ModelConfig
    from mamo.trainer import checkpoint as ckpt
    from mamo.trainer.config import OptimConfig
    from mamo.trainer.distributed import DistInfo
    from mamo.trainer.fsdp import average_replicated_grads, full_state_dict, shard_model
    from mamo.trainer.optim import build_optimizer

    if time.time() > deadline:
        rep.data["errors"].append({"section": "fsdp", "error": "skipped: time budget"})
        return
    t = plan["train"]
    dev = torch.device(DEVICE, 0) if DEVICE == "cuda" else torch.device("cpu")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group("nccl" if DEVICE == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        # momentum 0.5: the teacher moves visibly in two steps, so a missed EMA update shows
        mcfg = ModelConfig(preset=t["preset"], attn_impl="sdpa", text_init=None, momentum=0.5)
        plain = MAMO(mcfg, LossConfig(loss_impl="torch"), num_concepts=t["num_concepts"],
                     load_pretrained=False).to(dev).train()
        sharded = copy.deepcopy(plain)
        replicated = shard_model(sharded, DistInfo(rank=0, world_size=1, local_rank=0, device=dev))
        B, L, S = min(8, t["batch_size"]), t["text_len"], mcfg.vision.image_size
        g = torch.Generator().manual_seed(1)
        am = (torch.arange(L)[None, :] < torch.randint(8, L + 1, (B,), generator=g)[:, None]).long()
        ids = torch.randint(1000, 30000, (B, L), generator=g) * am
        ids[:, 0] = 101
        labels = torch.randint(0, t["num_concepts"], (B, L), generator=g)
        labels[(torch.rand(B, L, generator=g) < 0.6) | (am == 0)] = -100
        batch = {k: v.to(dev) for k, v in {"image": torch.randn(B, 3, S, S, generator=g), "input_ids": ids,
                                             "attention_mask": am, "concept_labels": labels}.items()}
        losses: dict[str, list[float]] = {}
        optims = {}
        for name, model in (("plain", plain), ("fsdp", sharded)):
            opt = build_optimizer(model, OptimConfig(lr=1e-4))
            optims[name] = opt
            params = [p for p in model.parameters() if p.requires_grad]
            for i in range(2):
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=DEVICE == "cuda"):
                    out = model(batch, generator_seed=i)
                out["loss"].backward()
                if name == "fsdp":
                    average_replicated_grads(replicated, DistInfo(0, 1, 0, dev))
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                model.momentum_update()
                losses.setdefault(name, []).append(float(out["loss"].detach().float()))
        loss_err = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(losses["plain"], losses["fsdp"]))
        full = full_state_dict(sharded)
        ref = plain.state_dict()
        weight_err = max(float((full[k].float() - ref[k].detach().cpu().float()).abs().max()
                               / ref[k].detach().float().abs().max().clamp_min(1e-12)) for k in ref)
        rep.check(kernel="fsdp", case=f"{t['preset']} B{B}: 2 steps, 1 rank vs unsharded", dtype="bf16 autocast"
                  if DEVICE == "cuda" else "fp32", err_out=loss_err, err_grad=weight_err,
                  ok=loss_err < 1e-3 and weight_err < 1e-2 and set(full) == set(ref))
        saved = ckpt.optimizer_state(sharded, optims["fsdp"])
        fresh = build_optimizer(sharded, OptimConfig(lr=1e-4))
        ckpt.load_optimizer_state(sharded, fresh, saved)
        a, b = optims["fsdp"].state_dict()["state"], fresh.state_dict()["state"]
        local = lambda x: x.to_local() if hasattr(x, "to_local") else x  # noqa: E731
        same = a.keys() == b.keys() and all(torch.equal(local(a[k]["exp_avg"]), local(b[k]["exp_avg"])) for k in a)
        rep.check(kernel="fsdp optimizer state", case="by name, saved and loaded", dtype="fp32",
                  err_out=0.0 if same else 1.0, err_grad=0.0, ok=same)
        rep.data["fsdp"] = {"losses": losses, "preset": t["preset"], "batch_size": B}
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "gpu_check"),
                    help="output path stem: writes <out>.json and <out>.md")
    ap.add_argument("--quick", action="store_true", help="smaller shapes and fewer repetitions")
    ap.add_argument("--plan", action="store_true", help="print the plan and exit (no GPU needed)")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help="comma-separated subset of " + ",".join(SECTIONS) + " (and ce_sweep)")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="stop starting new kernel timings after this many seconds")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="run every code path on the CPU at toy sizes (Triton interpreter); "
                         "for checking this script without a GPU, figures meaningless")
    ap.add_argument("--vocab", default=None,
                    help="WordPiece vocab.txt for the data section (default: the installed package's)")
    args = ap.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    plan = build_plan(args.quick, smoke=args.cpu_smoke)
    print_plan(plan, args)
    if args.plan:
        return 0
    if args.cpu_smoke:
        global DEVICE
        DEVICE = "cpu"
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported

    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed; nothing measured.")
        return 2
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available on this machine (no GPU or no CUDA build of torch); "
              "nothing measured. Run it on a GPU node; on the CPU the kernels are covered by "
              "`pytest tests/kernels` with TRITON_INTERPRET=1.")
        return 2
    if DEVICE == "cuda" and os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("gpu_check: TRITON_INTERPRET is set; unset it to run the compiled kernels.")
        return 2
    import triton

    start = time.time()
    deadline = start + args.budget_s
    meta = {"gpu": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu smoke", "torch": torch.__version__,
            "triton": triton.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "quick": args.quick}
    rep = Report(Path(args.out), meta)
    print("gpu_check:", json.dumps(meta))
    # TF32 stays off: the fp32 references must be true fp32 for the fp32 checks.
    sections = {
        "attention": lambda: attention_section(rep, plan, deadline),
        "attention_compiled": lambda: attention_compiled_section(rep, plan, deadline),
        "cross_entropy": lambda: cross_entropy_section(rep, plan, deadline),
        "regression": lambda: regression_section(rep, plan, deadline),
        "data": lambda: data_section(rep, plan, args),
        "train": lambda: train_section(rep, plan),
        "train_compiled": lambda: train_section(rep, plan, compiled=True, deadline=deadline),
        "train_cli": lambda: train_cli_section(rep, plan, args),
        "itc": lambda: itc_section(rep, plan),
        "profile": lambda: profile_section(rep, plan),
        "fsdp": lambda: fsdp_section(rep, plan, deadline),
        "ce_sweep": lambda: ce_sweep_section(rep, plan),
    }
    for name in args.sections:
        if name not in sections:
            print(f"gpu_check: unknown section {name!r}; known: {sorted(sections)}")
            return 2
        t0 = time.time()
        print(f"== {name} (t={t0 - start:.0f} s)")
        try:
            sections[name]()
        except Exception as e:  # noqa: BLE001
            rep.error(name, e)
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
        rep.data["meta"][f"{name}_s"] = round(time.time() - t0, 1)
        rep.save()
    rep.data["meta"]["total_s"] = round(time.time() - start, 1)
    rep.save()
    bad = [c for c in rep.data["checks"] if not c["ok"]]
    print(f"gpu_check: {len(rep.data['checks'])} checks, {len(bad)} failed, "
          f"{len(rep.data['errors'])} errors; wrote {args.out}.json and {args.out}.md "
          f"in {time.time() - start:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
