"""The trainer's data streams: batches across epoch boundaries, with a position that is one
small dict (saved in every checkpoint, per rank).

- ``BatchStream``: pre-training's loader (``mamo.data.build_loader``); the loader advances its
  own epoch and its ``state_dict`` (epoch, batch) is the whole position.
- ``IndexBatches``: fine-tuning's batches of example indices (seeded permutations); each rank
  gets its slice of every global batch.
"""
from __future__ import annotations

from typing import Any, Iterator, Protocol

import torch


class Stream(Protocol):
    """What the trainer reads batches from."""

    @property
    def epoch(self) -> int: ...

    def next(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...


class BatchStream:
    """Batches of a loader, epoch after epoch."""

    def __init__(self, loader: Any):
        self.loader = loader
        self._it: Iterator | None = None

    @property
    def epoch(self) -> int:
        return int(self.loader.epoch)

    def next(self) -> dict[str, Any]:
        for _ in range(2):  # at most one epoch change per call
            if self._it is None:
                self._it = iter(self.loader)
            try:
                return next(self._it)
            except StopIteration:
                self._it = None
        raise RuntimeError("the loader yields no batch in a whole epoch (data.batch_size larger than the data?)")

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()


class IndexBatches:
    """Global batches of ``batch_size`` indices into ``n`` examples: epochs of seeded random
    permutations. Every rank draws the same global batch and keeps ``batch[rank::world_size]``.
    The position is the number of batches drawn, so resuming replays the permutations only."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if n == 0:
            raise ValueError("no training examples")
        self.n, self.batch_size, self.seed = n, min(batch_size, n), seed
        self.rank, self.world_size = rank, world_size
        self._gen = torch.Generator().manual_seed(seed)
        self._perm = torch.randperm(n, generator=self._gen)
        self._pos = 0
        self.epoch = 0
        self.batches = 0

    def next(self) -> torch.Tensor:
        if self._pos + self.batch_size > self.n:
            self._perm, self._pos = torch.randperm(self.n, generator=self._gen), 0
            self.epoch += 1
        batch = self._perm[self._pos: self._pos + self.batch_size]
        self._pos += self.batch_size
        self.batches += 1
        return batch[self.rank::self.world_size]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch": self.batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__init__(self.n, self.batch_size, self.seed, self.rank, self.world_size)
        for _ in range(int(state["batch"])):
            self.next()


def to_device(batch: Any, device: torch.device) -> Any:
    """A tensor, or the tensors of a dict, on ``device`` (other values as they are)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def restart_at_next_epoch(loader: Any, saved: list[dict[str, Any]], saved_ws: int, world_size: int) -> str:
    """Position ``loader`` for an elastic resume and say what was skipped.

    The per-rank order is cut by world size, so another world size cannot continue inside an
    epoch: it starts the next one (or the saved one, when that had not begun)."""
    epoch = max(int(s["epoch"]) for s in saved)
    skipped = max(int(s["batch"]) for s in saved if int(s["epoch"]) == epoch)
    if skipped:
        epoch += 1
    loader.set_epoch(epoch)
    what = (f"the rest of epoch {epoch - 1} is skipped (each of the {saved_ws} ranks had read {skipped} batches)"
            if skipped else "the interrupted run had just finished an epoch, nothing is skipped")
    return f"train.elastic_resume: {saved_ws} -> {world_size} processes; data restarts at epoch {epoch}; {what}"
