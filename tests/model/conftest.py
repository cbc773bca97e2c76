"""Fixtures of the model tests; the batch maker and micro model are in model_testdata.py
(a uniquely named module: every test folder's conftest is imported as `conftest`)."""
from __future__ import annotations

import pytest
import torch

from model_testdata import make_batch


@pytest.fixture
def batch() -> dict:
    return make_batch()


@pytest.fixture(autouse=True)
def one_thread():
    """The test machine's cores are shared; one intra-op thread avoids oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
