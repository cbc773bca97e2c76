"""Seeds: the process-wide ones set once at start, and the per-step seed of the model's draws.

The per-step seed (masks, hard negatives) is a pure function of its position in the run, never
of how much global RNG was consumed before, so a resumed run draws what the uninterrupted run
drew. The global RNG states themselves travel in every checkpoint (``checkpoint.rng_state``).
"""
from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """Seed of the step's random choices: a function of (seed, step, micro-batch, rank)."""
    digest = hashlib.blake2b(f"{seed}:{step}:{micro}:{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Python, numpy and torch global RNGs (model initialisation, dropout)."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
