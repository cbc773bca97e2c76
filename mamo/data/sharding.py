"""Which samples a rank reads in an epoch, in which order, in which batches.

The whole order is a pure function of (sample index, seed, epoch, rank, world size), so the
position within an epoch is one integer (batches already yielded) and a restored loader
continues exactly: it recomputes the same plan and starts at that batch.

Train: the shard order is permuted per epoch, the concatenated samples pass through a
shuffle buffer (seeded per epoch), and the result is cut into ``world_size`` contiguous
parts, one per rank (contiguous, so a rank mostly reads its own shards). Parts are made
equal by repeating samples from the start of the order (as torch's DistributedSampler does),
so every rank runs the same number of steps; the repeats are counted (``padded``).
With ``group`` > 1 the units of the shuffle are runs of ``group`` consecutive samples of a
shard (its last run may be shorter), kept together and in order: relation twins, written as
samples ``2k`` and ``2k+1``, then land in the same batch (even shard sizes and an even batch
size keep every pair whole), so ITC and ITM see each caption against its swapped twin.
Eval: no shuffle, no repeats; parts differ by at most one sample and the ranks together
see every sample exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def buffer_shuffle(items: np.ndarray, buffer_size: int, rng: np.random.Generator) -> np.ndarray:
    """Streaming shuffle: keep ``buffer_size`` items, emit a random one for each new item."""
    n = len(items)
    if buffer_size >= n:
        return items[rng.permutation(n)]
    out = np.empty_like(items)
    buf = items[:buffer_size].copy()
    picks = rng.integers(0, buffer_size, size=n - buffer_size)
    for i in range(n - buffer_size):
        j = picks[i]
        out[i] = buf[j]
        buf[j] = items[buffer_size + i]
    out[n - buffer_size :] = buf[rng.permutation(buffer_size)]
    return out


def epoch_order(shard_sizes: list[int], seed: int, epoch: int, shuffle: bool, buffer_size: int,
                group: int = 1) -> np.ndarray:
    """Global sample ids (0..N-1, manifest order) in this epoch's reading order; with
    ``group`` > 1, runs of ``group`` consecutive samples of a shard move as one unit."""
    starts = np.concatenate([[0], np.cumsum(shard_sizes)]).astype(np.int64)
    if not shuffle:
        return np.arange(starts[-1], dtype=np.int64)
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    shard_perm = rng.permutation(len(shard_sizes))
    ids = np.concatenate([np.arange(starts[s], starts[s + 1], dtype=np.int64) for s in shard_perm]) \
        if len(shard_sizes) else np.zeros(0, dtype=np.int64)
    if group <= 1 or ids.size == 0:
        return buffer_shuffle(ids, buffer_size, rng)
    # the units: runs [start, end) of positions in `ids`, never across a shard's end
    run_starts, run_ends, off = [], [], 0
    for s in shard_perm:
        n = shard_sizes[s]
        r = np.arange(off, off + n, group, dtype=np.int64)
        run_starts.append(r)
        run_ends.append(np.minimum(r + group, off + n))
        off += n
    starts_, ends_ = np.concatenate(run_starts), np.concatenate(run_ends)
    units = buffer_shuffle(np.arange(len(starts_)), max(1, buffer_size // group), rng)
    return np.concatenate([ids[starts_[u]:ends_[u]] for u in units]) if len(units) else ids


@dataclass(frozen=True)
class RankPlan:
    """One rank's samples for one epoch, cut into batches."""

    samples: np.ndarray  # global sample ids in reading order
    padded: int  # how many of them repeat samples of another position (train only)
    batch_size: int
    drop_last: bool

    @property
    def num_batches(self) -> int:
        n, b = len(self.samples), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    @property
    def samples_per_epoch(self) -> int:
        """Sample slots this rank yields per epoch (before skipping corrupt samples)."""
        return min(len(self.samples), self.num_batches * self.batch_size)

    def batch(self, i: int) -> np.ndarray:
        if not 0 <= i < self.num_batches:
            raise IndexError(f"batch {i} outside 0..{self.num_batches - 1}")
        return self.samples[i * self.batch_size : (i + 1) * self.batch_size]


def rank_plan(shard_sizes: list[int], *, seed: int, epoch: int, rank: int, world_size: int,
              batch_size: int, train: bool, buffer_size: int, drop_last: bool,
              group: int = 1) -> RankPlan:
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
    order = epoch_order(shard_sizes, seed, epoch, shuffle=train, buffer_size=buffer_size, group=group)
    n = len(order)
    padded = 0
    if train:
        per_rank = -(-n // world_size)
        total = per_rank * world_size
        if total > n:  # wrap around; repeats land in the last ranks' parts
            order = np.concatenate([order, np.resize(order, total - n)])
        part = order[rank * per_rank : (rank + 1) * per_rank]
        padded = int(max(0, min((rank + 1) * per_rank, total) - max(rank * per_rank, n)))
    else:
        bounds = [n * r // world_size for r in range(world_size + 1)]
        part = order[bounds[rank] : bounds[rank + 1]]
    return RankPlan(samples=part, padded=padded, batch_size=batch_size, drop_last=drop_last and train)
