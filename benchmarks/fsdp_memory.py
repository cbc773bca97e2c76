"""Training state per rank under DDP and FSDP (``train.parallel``), side by side.

    python benchmarks/fsdp_memory.py                       # base preset, 2 processes (gloo, CPU)
    python benchmarks/fsdp_memory.py --preset small --world-size 4

Starts ``--world-size`` processes (gloo on the CPU; nccl with one GPU each when there are
enough GPUs), builds the preset's MAMO model in each, wraps it as the trainer does
(``mamo.trainer.distributed.wrap_ddp`` / ``mamo.trainer.fsdp.shard_model``), runs one real
optimizer step (forward, backward, AdamW, EMA update) on a small synthetic batch and then
counts the bytes each rank holds: trainable weights, their gradients, AdamW's state, the
momentum (EMA) teacher, and the other buffers (the ITC queue, replicated in both modes).
Activations are not counted (FSDP does not shard them; they depend on the batch). The counts
are exact tensor sizes, not allocator readings, so they are the same on CPU and GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NUM_CONCEPTS = 1000


def _nbytes(t: torch.Tensor) -> int:
    local = t.to_local() if hasattr(t, "to_local") else t
    return local.numel() * local.element_size()


def _batch(B: int, L: int, image_size: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(8, L + 1, (B,), generator=g)
    am = (torch.arange(L)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1000, 30000, (B, L), generator=g) * am
    ids[:, 0] = 101
    labels = torch.randint(0, NUM_CONCEPTS, (B, L), generator=g)
    labels[(torch.rand(B, L, generator=g) < 0.6) | (am == 0)] = -100
    batch = {"image": torch.randn(B, 3, image_size, image_size, generator=g), "input_ids": ids,
             "attention_mask": am, "concept_labels": labels}
    return {k: v.to(device) for k, v in batch.items()}


def _worker(rank: int, world: int, port: int, preset: str, mode: str, batch: int, out: str) -> None:
    from mamo.model import MAMO, LossConfig, ModelConfig
    from mamo.trainer.distributed import DistInfo, wrap_ddp
    from mamo.trainer.fsdp import average_replicated_grads, shard_model
    from mamo.trainer.optim import build_optimizer
    from mamo.trainer.config import OptimConfig

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = torch.cuda.is_available() and torch.cuda.device_count() >= world
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    info = DistInfo(rank=rank, world_size=world, local_rank=rank, device=device)
    torch.manual_seed(0)
    mcfg = ModelConfig(preset=preset, attn_impl="sdpa", text_init=None)
    model = MAMO(mcfg, LossConfig(loss_impl="torch"), num_concepts=NUM_CONCEPTS, load_pretrained=False).to(device)
    replicated = shard_model(model, info) if mode == "fsdp" else []
    wrapped = model if mode == "fsdp" else wrap_ddp(model, info, find_unused=False)
    opt = build_optimizer(model, OptimConfig())
    out_ = wrapped(_batch(batch, 30, mcfg.vision.image_size, device), generator_seed=rank)
    out_["loss"].backward()
    average_replicated_grads(replicated, info)
    opt.step()
    model.momentum_update()
    params = [p for p in model.parameters() if p.requires_grad]
    row = {
        "weights": sum(_nbytes(p) for p in params),
        "grads": sum(_nbytes(p.grad) for p in params if p.grad is not None),
        "optimizer": sum(_nbytes(v) for s in opt.state.values() for v in s.values()
                         if isinstance(v, torch.Tensor) and v.ndim > 0),
        "teacher": sum(_nbytes(t) for t in (*model.momentum.parameters(), *model.momentum.buffers())),
        "other buffers": sum(_nbytes(b) for name, b in model.named_buffers() if not name.startswith("momentum.")),
        "loss": float(out_["loss"].detach().float()),
    }
    rows: list = [None] * world
    dist.all_gather_object(rows, row)
    if rank == 0:
        Path(out).write_text(json.dumps(rows))
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(preset: str, world: int, mode: str, batch: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "rows.json")
        mp.spawn(_worker, args=(world, _free_port(), preset, mode, batch, out), nprocs=world, join=True)
        return json.loads(Path(out).read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="base", choices=["tiny", "small", "base"])
    ap.add_argument("--world-size", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=2, help="per rank (only to run one real step)")
    args = ap.parse_args(argv)
    res = {mode: measure(args.preset, args.world_size, mode, args.batch_size) for mode in ("ddp", "fsdp")}
    mib = 2**20
    print(f"preset {args.preset}, {args.world_size} processes, per rank after one step (MiB; max over ranks)")
    print(f"{'':>22} {'ddp':>10} {'fsdp':>10} {'fsdp/ddp':>9}")
    totals = {}
    for key in ("weights", "grads", "optimizer", "teacher", "other buffers"):
        a = max(r[key] for r in res["ddp"])
        b = max(r[key] for r in res["fsdp"])
        totals[key] = (a, b)
        print(f"{key:>22} {a / mib:10.1f} {b / mib:10.1f} {b / a if a else float('nan'):9.2f}")
    a = max(sum(r[k] for k in totals) for r in res["ddp"])
    b = max(sum(r[k] for k in totals) for r in res["fsdp"])
    print(f"{'total':>22} {a / mib:10.1f} {b / mib:10.1f} {b / a:9.2f}")
    print(f"loss of the step, rank 0: ddp {res['ddp'][0]['loss']:.5f}  fsdp {res['fsdp'][0]['loss']:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
