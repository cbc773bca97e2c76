"""``build_loader``: the iterable of batches of docs/ARCHITECTURE.md section 3.

Position within an epoch = the number of batches already yielded; the batch plan is a pure
function of (data, seed, epoch, rank, world size) (see sharding.py), so ``state_dict`` is a
few integers and a restored loader yields exactly the batches the interrupted one had left.
"""
from __future__ import annotations

import logging
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterator

import torch

from mamo.data.batches import MISSING_ANNOTATION, ConceptSpans, TextEncoder, assemble_batch
from mamo.data.config import DataConfig
from mamo.data.dali_pipeline import DaliImageDecoder, dali_available
from mamo.data.index import SampleIndex, ShardFiles, build_index
from mamo.data.samples import CORRUPT_IMAGE, MISSING_CAPTION, MISSING_IMAGE, READ_ERROR, RawBatch, read_raw_batch
from mamo.data.sharding import RankPlan, rank_plan
from mamo.data.torch_fallback import PlannedBatches, iter_fallback

log = logging.getLogger(__name__)

SKIP_REASONS = (MISSING_IMAGE, MISSING_CAPTION, CORRUPT_IMAGE, READ_ERROR)
READ_AHEAD = 2  # batches read (bytes + headers) in a thread while DALI decodes


def resolve_backend(backend: str) -> str:
    if backend == "auto":
        return "dali" if dali_available() else "torch"
    if backend == "dali" and not dali_available():
        raise RuntimeError("data.backend=dali but nvidia.dali cannot be imported; use backend=torch or auto")
    return backend


def resolve_decode(decode: str) -> str:
    if decode == "auto":
        return "mixed" if torch.cuda.is_available() else "cpu"
    if decode == "mixed" and not torch.cuda.is_available():
        raise RuntimeError("data.decode=mixed needs a CUDA device; use decode=cpu or auto")
    return decode


class Loader:
    """Batches of one split for one rank; iterate once per epoch (the epoch then advances)."""

    def __init__(self, cfg: DataConfig, split: str, rank: int = 0, world_size: int = 1, epoch: int = 0,
                 tokenizer: Any = None):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.cfg, self.split, self.train = cfg, split, split == "train"
        self.rank, self.world_size = rank, world_size
        self.version_dir = cfg.version_for(split)
        self.index: SampleIndex = build_index(self.version_dir, cfg.verify, cfg.on_corrupt)
        self.concepts = ConceptSpans(self.version_dir, cfg.vocab_id, self.index.shard_stems)
        self.text = TextEncoder(self.concepts, cfg.max_text_len, cfg.label_pieces, tokenizer)
        self.backend = resolve_backend(cfg.backend)
        self.decode = resolve_decode(cfg.decode) if self.backend == "dali" else "cpu"
        self._decoder: DaliImageDecoder | None = None
        self._plan: RankPlan | None = None
        self._plan_epoch = -1
        self.epoch = epoch
        self._batch = 0  # next batch of the plan to yield
        self.stats: dict[str, Any] = self._fresh_stats()

    # --- what the trainer reads -----------------------------------------------------------
    @property
    def vocab_id(self) -> str | None:
        return self.concepts.vocab_id

    @property
    def concept_vocab_size(self) -> int:
        return self.concepts.num_concepts

    @property
    def plan(self) -> RankPlan:
        if self._plan is None or self._plan_epoch != self.epoch:
            self._plan = rank_plan(
                self.index.shard_sizes, seed=self.cfg.seed, epoch=self.epoch, rank=self.rank,
                world_size=self.world_size, batch_size=self.cfg.batch_size, train=self.train,
                buffer_size=self.cfg.shuffle_buffer, drop_last=self.cfg.drop_last,
                group=self.cfg.shuffle_group)
            self._plan_epoch = self.epoch
        return self._plan

    @property
    def samples_per_epoch(self) -> int:
        """Sample slots this rank yields per epoch (fewer only if samples are skipped)."""
        return self.plan.samples_per_epoch

    def __len__(self) -> int:
        return self.plan.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning."""
        self.epoch, self._batch = epoch, 0

    # --- position --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        epoch, batch = self.epoch, self._batch
        if batch >= self.plan.num_batches:  # epoch fully handed out: resume at the next one
            epoch, batch = epoch + 1, 0
        return {"epoch": epoch, "batch": batch, "rank": self.rank, "world_size": self.world_size,
                "seed": self.cfg.seed, "batch_size": self.cfg.batch_size, "split": self.split,
                "data": self.index.fingerprint(), "stats": dict(self.stats)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, mine in (("rank", self.rank), ("world_size", self.world_size), ("seed", self.cfg.seed),
                           ("batch_size", self.cfg.batch_size), ("split", self.split),
                           ("data", self.index.fingerprint())):
            if state.get(name) != mine:
                raise ValueError(f"loader state has {name}={state.get(name)!r} but this loader has {mine!r}; "
                                 "an exact resume needs the same data, seed, batch size, rank and world size")
        self.epoch, self._batch = int(state["epoch"]), int(state["batch"])
        self.stats = dict(state.get("stats") or self._fresh_stats())

    # --- iteration -------------------------------------------------------------------------
    def _fresh_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"epoch": self.epoch, "batches": 0, "samples": 0}
        stats.update({k: 0 for k in (*SKIP_REASONS, MISSING_ANNOTATION)})
        return stats

    def __iter__(self) -> Iterator[dict[str, Any]]:
        plan = self.plan
        if self.stats.get("epoch") != self.epoch or self._batch == 0:
            self.stats = self._fresh_stats()
        self.stats.update(padded=plan.padded, samples_per_epoch=plan.samples_per_epoch,
                          backend=self.backend, decode=self.decode)
        for raw, images in self._decoded(plan, self._batch):
            counts: Counter = Counter(raw.skipped)
            batch = None
            if len(raw):
                if raw.text is None or raw.text_keys != raw.keys:  # not prepared, or rows dropped at decode
                    self._encode_text(raw)
                counts.update(raw.text_counts)
                batch = assemble_batch(images, raw.keys, raw.captions, raw.text)
            for k, v in counts.items():
                self.stats[k] = self.stats.get(k, 0) + v
            self._batch = raw.batch_index + 1  # before yield: state_dict() now counts this batch
            if batch is not None:
                self.stats["batches"] += 1
                self.stats["samples"] += len(raw)
                yield batch
        self._end_epoch()

    def _encode_text(self, raw: RawBatch) -> None:
        raw.text_counts = Counter()
        stems = [self.index.shard_stems[s] for s in raw.shards]
        raw.text = self.text(raw.captions, stems, raw.keys, raw.text_counts, raw.caption_edits)
        raw.text_keys = list(raw.keys)

    def _end_epoch(self) -> None:
        skipped = {k: self.stats[k] for k in (*SKIP_REASONS, MISSING_ANNOTATION) if self.stats.get(k)}
        (log.warning if skipped else log.info)(
            "epoch %d rank %d/%d done: %d samples in %d batches%s", self.epoch, self.rank, self.world_size,
            self.stats["samples"], self.stats["batches"], f"; skipped/unlabelled: {skipped}" if skipped else "")
        self.epoch += 1
        self._batch = 0

    def _decoded(self, plan: RankPlan, start: int) -> Iterator[tuple[RawBatch, torch.Tensor]]:
        cfg = self.cfg
        if self.backend == "torch":
            dataset = PlannedBatches(self.index, plan, start, train=self.train, seed=cfg.seed, epoch=self.epoch,
                                     augment=cfg.augment, image_size=cfg.image_size, mean=cfg.mean, std=cfg.std)
            yield from iter_fallback(dataset, cfg.num_workers)
            return
        if self._decoder is None:
            self._decoder = DaliImageDecoder(
                batch_size=cfg.batch_size, image_size=cfg.image_size, mean=cfg.mean, std=cfg.std,
                num_threads=cfg.num_threads, decode=self.decode, device_id=cfg.device_id, seed=cfg.seed)
        files = ShardFiles(self.index.shard_paths)
        epoch = self.epoch

        def read(b: int) -> RawBatch:
            # bytes, headers and tokenisation here, in a thread, while DALI decodes (GIL released)
            raw = read_raw_batch(self.index, files, plan.batch(b), b, train=self.train, seed=cfg.seed,
                                 epoch=epoch, augment=cfg.augment)
            if len(raw):
                self._encode_text(raw)
            return raw

        def decode(b: int, read_done: Future) -> tuple[RawBatch, torch.Tensor]:
            # one thread owns the DALI pipeline, so runs stay in plan order and a decode error
            # still belongs to a known batch; DALI releases the GIL while it decodes
            raw = read_done.result()
            return raw, self._decoder.decode(raw)

        # reading + tokenisation of batch n+2 and DALI's decode of batch n+1 run while batch n
        # is assembled and consumed (the training step); the position (self._batch) only
        # moves when a batch is yielded, so work done ahead is simply dropped on a stop
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mamo-read")
        decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mamo-decode")
        try:
            pending: deque[Future] = deque()
            nxt = start

            def submit() -> None:
                nonlocal nxt
                pending.append(decoder.submit(decode, nxt, reader.submit(read, nxt)))
                nxt += 1

            while nxt < min(start + READ_AHEAD, plan.num_batches):  # read, then decoded, ahead
                submit()
            while pending:
                done = pending.popleft()
                if nxt < plan.num_batches:
                    submit()
                yield done.result()
        finally:
            # a stopped iteration: queued batches are cancelled, running ones finish first
            decoder.shutdown(wait=True, cancel_futures=True)
            reader.shutdown(wait=True, cancel_futures=True)
            files.close()


def build_loader(cfg: DataConfig, split: str, rank: int = 0, world_size: int = 1, epoch: int = 0) -> Loader:
    """Batches of ``split`` ("train": shuffled, augmented; "eval": in order, centre crop) for
    ``rank`` of ``world_size``, starting at ``epoch``."""
    return Loader(cfg, split, rank=rank, world_size=world_size, epoch=epoch)
