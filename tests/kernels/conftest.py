"""Fresh random inputs each run; the seed is printed so that a failure can be replayed.

Replay a failure with KERNEL_TEST_SEED=<seed> (the seed shows in the captured output).

Tests named ``test_cuda_*`` run the compiled kernels on a GPU at the model's shapes; they are
skipped without CUDA and under the interpreter. benchmarks/gpu_check.py runs them on a lent GPU:
``TRITON_INTERPRET=0 pytest tests/kernels -k test_cuda_``.
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


@pytest.fixture
def cuda() -> torch.device:
    """The GPU, for the compiled kernels; skips the test without CUDA or under the interpreter."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        pytest.skip("runs the compiled kernels: needs TRITON_INTERPRET=0")
    return torch.device("cuda")
