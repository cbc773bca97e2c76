"""Training state per rank under FSDP against DDP (``train.parallel``), side by side.

    python -m benchmarks.fsdp_memory                       # base preset, 2 processes (gloo, CPU)
    python -m benchmarks.fsdp_memory --preset small --world-size 4
    python -m benchmarks.fsdp_memory --smoke               # micro model, one rank, in this process

Starts ``--world-size`` processes (gloo on the CPU; nccl with one GPU each when there are
enough GPUs), builds the preset's MAMO model in each, wraps it as the trainer does
(``mamo.trainer.distributed.wrap_ddp`` / ``mamo.trainer.fsdp.shard_model``), runs one real
optimizer step (forward, backward, AdamW, EMA update) on a small synthetic batch and then
counts the bytes each rank holds: trainable weights, their gradients, AdamW's state, the
momentum (EMA) teacher, and the other buffers (the ITC queue, replicated in both modes).
Activations are not counted (FSDP does not shard them; they depend on the batch). The counts
are exact tensor sizes, not allocator readings, so they are the same on CPU and GPU.

:func:`check_one_rank` (benchmarks/gpu_check.py, section ``fsdp``) runs the FSDP path on one
device against the same model unsharded: same losses and weights after two steps, and the
optimizer state saved and loaded by name, as ``mamo.train`` does.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from benchmarks import harness
from benchmarks.harness import Report

NUM_CONCEPTS = 1000
KINDS = ("weights", "grads", "optimizer", "teacher", "other buffers")


def _nbytes(t) -> int:
    local = t.to_local() if hasattr(t, "to_local") else t
    return local.numel() * local.element_size()


@contextlib.contextmanager
def process_group(rank: int, world: int, port: int, device) -> Iterator[Any]:
    """A process group (nccl on CUDA, gloo on the CPU) and this rank's DistInfo."""
    import torch.distributed as dist

    from mamo.trainer.distributed import DistInfo

    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world)
    try:
        yield DistInfo(rank=rank, world_size=world, local_rank=rank, device=device)
    finally:
        dist.destroy_process_group()


def _worker(rank: int, world: int, port: int, preset: str, mode: str, batch: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    from mamo.trainer.config import OptimConfig
    from mamo.trainer.distributed import wrap_ddp
    from mamo.trainer.fsdp import average_replicated_grads, shard_model
    from mamo.trainer.optim import build_optimizer

    cuda = torch.cuda.is_available() and torch.cuda.device_count() >= world
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.set_num_threads(1)
    with process_group(rank, world, port, device) as info:
        model = harness.synthetic_model(preset, NUM_CONCEPTS).to(device)
        replicated = shard_model(model, info) if mode == "fsdp" else []
        wrapped = model if mode == "fsdp" else wrap_ddp(model, info, find_unused=False)
        opt = build_optimizer(model, OptimConfig())
        data = harness.synthetic_batch(batch, 30, model.model_cfg.vision.image_size, NUM_CONCEPTS, device)
        out_ = wrapped(data, generator_seed=rank)
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


def measure(preset: str, world: int, mode: str, batch: int) -> list[dict]:
    """Bytes per rank after one step, one row per rank (one rank: in this process)."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "rows.json")
        args = (world, harness.free_port(), preset, mode, batch, out)
        if world == 1:
            _worker(0, *args)
        else:
            mp.spawn(_worker, args=args, nprocs=world, join=True)
        return json.loads(Path(out).read_text())


def check_one_rank(rep: Report, preset: str, batch: int, device: str) -> None:
    """The FSDP path on ``device`` with one rank against an unsharded copy, two steps each
    (AdamW, clipping, EMA): same losses and weights; the full state gathered for a checkpoint;
    the optimizer state round-tripped by name."""
    import torch

    from mamo.trainer import checkpoint as ckpt
    from mamo.trainer.config import OptimConfig
    from mamo.trainer.fsdp import average_replicated_grads, full_state_dict, shard_model
    from mamo.trainer.optim import build_optimizer

    dev = torch.device(device, 0) if device == "cuda" else torch.device("cpu")
    amp = dev.type == "cuda"
    with process_group(0, 1, harness.free_port(), dev) as info:
        # momentum 0.5: the teacher moves visibly in two steps, so a missed EMA update shows
        plain = harness.synthetic_model(preset, NUM_CONCEPTS, overrides=["momentum=0.5"]).to(dev)
        sharded = copy.deepcopy(plain)
        replicated = shard_model(sharded, info)
        data = harness.synthetic_batch(batch, 30, plain.model_cfg.vision.image_size, NUM_CONCEPTS, dev, seed=1)
        losses: dict[str, list[float]] = {}
        optims = {}
        for name, model in (("plain", plain), ("fsdp", sharded)):
            optims[name] = opt = build_optimizer(model, OptimConfig(lr=1e-4))
            params = [p for p in model.parameters() if p.requires_grad]
            for i in range(2):
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                    out = model(data, generator_seed=i)
                out["loss"].backward()
                if name == "fsdp":
                    average_replicated_grads(replicated, info)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                model.momentum_update()
                losses.setdefault(name, []).append(float(out["loss"].detach().float()))
        loss_err = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(losses["plain"], losses["fsdp"]))
        full, ref = full_state_dict(sharded), plain.state_dict()
        weight_err = max(harness.rel_err(full[k], ref[k].cpu()) for k in ref)
        precision = "bf16 autocast" if amp else "fp32"
        rep.check("fsdp", f"{preset} B{batch}: 2 steps, 1 rank vs unsharded ({precision})",
                  loss_err < 1e-3 and weight_err < 1e-2 and set(full) == set(ref), loss_err=loss_err,
                  weight_err=weight_err)
        saved = ckpt.optimizer_state(sharded, optims["fsdp"])
        fresh = build_optimizer(sharded, OptimConfig(lr=1e-4))
        ckpt.load_optimizer_state(sharded, fresh, saved)
        a, b = optims["fsdp"].state_dict()["state"], fresh.state_dict()["state"]
        local = lambda x: x.to_local() if hasattr(x, "to_local") else x  # noqa: E731
        same = a.keys() == b.keys() and all(torch.equal(local(a[k]["exp_avg"]), local(b[k]["exp_avg"])) for k in a)
        rep.check("fsdp optimizer state", "by name, saved and loaded", same)
        rep.section("fsdp", {"losses": losses, "preset": preset, "batch_size": batch})


def main(argv: list[str] | None = None) -> int:
    ap = harness.parser(__doc__)
    ap.add_argument("--preset", default="base", choices=["tiny", "small", "base"])
    ap.add_argument("--world-size", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=2, help="per rank (only to run one real step)")
    args = harness.parse(ap, argv)
    if args.smoke:
        args.preset, args.world_size, args.batch_size = "micro", 1, 1
    res = {mode: measure(args.preset, args.world_size, mode, args.batch_size) for mode in ("ddp", "fsdp")}
    rep = Report(f"training state per rank, fsdp vs ddp ({args.world_size} processes, after one step, "
                 "max over ranks)", {"preset": args.preset}, args.out)
    case = f"{args.preset}, {args.world_size} ranks"
    for key in KINDS:
        rep.row("state per rank", f"{case}: {key}", "fsdp", max(r[key] for r in res["fsdp"]) / 2**20, "ddp",
                max(r[key] for r in res["ddp"]) / 2**20, "MiB")
    totals = {mode: max(sum(r[k] for k in KINDS) for r in rows) / 2**20 for mode, rows in res.items()}
    rep.row("state per rank", f"{case}: total", "fsdp", totals["fsdp"], "ddp", totals["ddp"], "MiB",
            loss_rank0=res["fsdp"][0]["loss"], base_loss_rank0=res["ddp"][0]["loss"])
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
