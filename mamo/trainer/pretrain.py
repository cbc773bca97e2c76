"""Pre-training on the shared loop: a prepared run (``preflight.prepare``) becomes a
``TrainingJob`` for the ``Trainer``; at the end, ``final/`` is exported."""
from __future__ import annotations

import dataclasses
import logging

import torch
from torch import nn

from mamo.core.files import disk_errors, write_json, write_text
from mamo.run_dir import RunDir
from mamo.trainer import checkpoint as ckpt
from mamo.trainer.batching import BatchStream
from mamo.trainer.config import RunConfig
from mamo.trainer.distributed import DistInfo, barrier, cleanup, gather_digests, init_distributed
from mamo.trainer.fsdp import weights_to_save
from mamo.trainer.preflight import Prepared, StartError, one_line
from mamo.trainer.seeding import seed_everything
from mamo.trainer.trainer import Trainer, TrainingJob

log = logging.getLogger(__name__)


def build_model(cfg: RunConfig, num_concepts: int) -> nn.Module:
    from mamo.model import MAMO

    return MAMO(cfg.model, cfg.loss, num_concepts)


def find_unused(cfg: RunConfig) -> bool:
    if cfg.train.ddp_find_unused is not None:
        return cfg.train.ddp_find_unused
    lc = cfg.loss
    # A zero weight leaves its head without gradient: DDP must be told.
    return any(w == 0 for w in (lc.w_itc, lc.w_itm, lc.w_mmm, lc.lambda_v, lc.lambda_t)) or lc.text_target == "none"


def pretrain(p: Prepared, progress: bool = True) -> None:
    """Run (or continue) pre-training to ``final/``. Raises ``TrainingStopped`` (stopped by a
    signal, checkpoint written) or ``TrainingAborted`` (non-finite steps)."""
    info = init_distributed(p.cfg.train.device)
    try:
        trainer = setup(p, info, progress)
        # From here on the run dir is ours to write (every check has passed).
        with disk_errors("training", p.run_dir):
            if info.is_main:
                write_run_files(p)
                for note in p.notes:
                    log.info("%s", note)
            trainer.train()
            export_final(p, trainer, info)
    finally:
        cleanup(info)



def setup(p: Prepared, info: DistInfo, progress: bool) -> Trainer:
    """Seeds, the model (from ``train.init_from`` or the checkpoint resumed) and its Trainer."""
    tc = p.cfg.train
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    seed_everything(tc.seed)
    if info.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:
        model = build_model(p.cfg, p.expected_meta["num_concepts"]).to(info.device)
        if tc.init_from and p.resume_from is None:
            ckpt.load_weights(model, tc.init_from)  # online, momentum copy and queue
        job = TrainingJob(model=model, stream=BatchStream(p.loader), run_dir=RunDir(p.run_dir),
                          total_steps=p.total_steps, meta=p.expected_meta,
                          samples_per_step=p.cfg.data.batch_size * tc.grad_accum * p.world_size,
                          resume_from=p.resume_from, before_step=model.set_progress)
        return Trainer(job, dataclasses.replace(tc, ddp_find_unused=find_unused(p.cfg)), p.cfg.optim, info,
                       progress=progress)
    except (ckpt.CheckpointError, ValueError, KeyError, RuntimeError, OSError) as e:
        # Still nothing written: report it like any other failed start.
        raise StartError(f"cannot set up the model/optimizer: {one_line(e)}") from e


def write_run_files(p: Prepared) -> None:
    run = RunDir(p.run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    write_text(run.config, p.config_yaml)
    write_json(run.data_versions, p.data_versions)


def export_final(p: Prepared, trainer: Trainer, info: DistInfo) -> None:
    """``final/`` (weights, config, meta; with several processes their state digests, which
    prove that DDP (FSDP: the replicated part) kept every rank identical)."""
    digests = gather_digests(trainer.model, info)
    weights = weights_to_save(trainer.model)  # a collective when sharded
    if info.is_main:
        meta = {**p.expected_meta, "step": trainer.step, "data_versions": p.data_versions}
        final = ckpt.export_final(p.run_dir, weights, meta, p.config_yaml)
        if info.distributed:
            write_json(RunDir(p.run_dir).final.rank_digests, digests)
        log.info("done: %d steps; final weights in %s", trainer.step, final)
    if info.distributed and len(set(digests)) != 1:
        raise RuntimeError(f"ranks diverged: state digests {digests}")
    barrier(info)
