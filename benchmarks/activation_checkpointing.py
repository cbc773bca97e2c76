"""Activation checkpointing (``train.activation_checkpointing``) against none, side by side.

    python benchmarks/activation_checkpointing.py                         # small, batch 8, CPU
    python benchmarks/activation_checkpointing.py --preset base --batch 64 --device cuda

One process, the same model weights and batch for both runs. Per configuration: the memory
autograd keeps for the backward during the forward (exact accounting of saved storages,
parameters excluded, checkpointed blocks' kept inputs included:
``mamo.trainer.activation_checkpointing.saved_activation_bytes``), the median time of a full
step (forward, backward, AdamW, EMA) and, on CUDA, the step's peak allocated memory.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NUM_CONCEPTS = 1000


def _batch(B: int, L: int, size: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    am = (torch.arange(L)[None, :] < torch.randint(8, L + 1, (B,), generator=g)[:, None]).long()
    ids = torch.randint(1000, 30000, (B, L), generator=g) * am
    ids[:, 0] = 101
    labels = torch.randint(0, NUM_CONCEPTS, (B, L), generator=g)
    labels[(torch.rand(B, L, generator=g) < 0.6) | (am == 0)] = -100
    batch = {"image": torch.randn(B, 3, size, size, generator=g), "input_ids": ids, "attention_mask": am,
             "concept_labels": labels}
    return {k: v.to(device) for k, v in batch.items()}


def measure(model, batch, steps: int, device: torch.device, amp: bool) -> dict:
    from mamo.trainer.activation_checkpointing import saved_activation_bytes

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    cuda = device.type == "cuda"
    times, saved, peak = [], 0, None

    def sync():
        if cuda:
            torch.cuda.synchronize()

    for i in range(steps + 1):  # the first step warms up
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        sync()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out, saved = saved_activation_bytes(lambda: model(batch, generator_seed=i), model)
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.momentum_update()
        sync()
        if i:
            times.append(time.perf_counter() - t0)
        if cuda:
            peak = torch.cuda.max_memory_allocated()
    return {"saved_MiB": saved / 2**20, "step_s": statistics.median(times),
            "peak_MiB": peak / 2**20 if peak is not None else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small", choices=["tiny", "small", "base"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per configuration (after one warm-up)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from mamo.model import MAMO, LossConfig, ModelConfig
    from mamo.trainer.activation_checkpointing import checkpoint_blocks

    device = torch.device(args.device)
    torch.manual_seed(0)
    mcfg = ModelConfig(preset=args.preset, attn_impl="sdpa", text_init=None)
    plain = MAMO(mcfg, LossConfig(loss_impl="torch"), num_concepts=NUM_CONCEPTS, load_pretrained=False)
    ac = copy.deepcopy(plain)
    n = checkpoint_blocks(ac)
    batch = _batch(args.batch, 30, mcfg.vision.image_size, device)
    amp = device.type == "cuda"
    rows = {}
    for name, model in (("none", plain), ("per block", ac)):
        model.to(device).train()
        rows[name] = measure(model, batch, args.steps, device, amp)
        model.to("cpu")
        print(f"  measured {name}: {rows[name]}", file=sys.stderr, flush=True)
    a, b = rows["none"], rows["per block"]
    print(f"activation checkpointing, preset {args.preset}, batch {args.batch}, device {args.device}"
          f"{' (bf16 autocast)' if amp else ''}; {n} blocks checkpointed")
    print(f"{'':>26} {'none':>10} {'per block':>10} {'ratio':>7}")
    print(f"{'kept for backward, MiB':>26} {a['saved_MiB']:10.1f} {b['saved_MiB']:10.1f} "
          f"{b['saved_MiB'] / a['saved_MiB']:7.2f}")
    print(f"{'step time, s (median)':>26} {a['step_s']:10.3f} {b['step_s']:10.3f} {b['step_s'] / a['step_s']:7.2f}")
    if a["peak_MiB"] is not None:
        print(f"{'peak allocated, MiB':>26} {a['peak_MiB']:10.1f} {b['peak_MiB']:10.1f} "
              f"{b['peak_MiB'] / a['peak_MiB']:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
