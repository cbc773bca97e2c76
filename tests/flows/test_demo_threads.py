"""The demo's torch thread count: explicit values pass through; 0 picks by the machine's load."""
import os

from flows.demo import torch_threads


def test_explicit_threads_pass_through():
    assert torch_threads(3) == 3


def test_auto_threads_use_all_cores_only_when_idle():
    before = os.getloadavg()[0]
    got = torch_threads(0)
    after = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    assert got in (1, cores)
    if min(before, after) >= 0.5:  # busy throughout (e.g. other tests running): never more than 1
        assert got == 1
    if max(before, after) < 0.5:
        assert got == cores
