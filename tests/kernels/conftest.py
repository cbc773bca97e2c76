"""Fresh random inputs each run; the seed is printed so that a failure can be replayed.

Replay a failure with KERNEL_TEST_SEED=<seed> (the seed shows in the captured output).
"""
import os
import random

import pytest
import torch


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("KERNEL_TEST_SEED", random.SystemRandom().randrange(2**31)))
    torch.manual_seed(value)
    print(f"KERNEL_TEST_SEED={value}")
    return value
