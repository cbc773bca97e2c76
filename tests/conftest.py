"""Shared test setup.

Environment first: Triton runs kernels on the CPU only when TRITON_INTERPRET=1 is set before
it is imported; Prefect must stay offline and quiet; albumentations (via img2dataset) must
not check for updates.
"""
import os
import tempfile

os.environ.setdefault("TRITON_INTERPRET", "1")
from mamo.core.env import apply_quiet_service_env  # noqa: E402 - torch-free, imports no stage

apply_quiet_service_env(prefect_home=tempfile.mkdtemp(prefix="mamo-prefect-home-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests never write the user's kernel tuning cache (kernels/tuning.py).
os.environ.setdefault("MAMO_TUNING_CACHE", os.path.join(tempfile.mkdtemp(prefix="mamo-tuning-"), "kernel_tuning.json"))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for the whole test run (it takes ~20 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("session")


@pytest.fixture(scope="session")
def free_port():
    """``free_port()``: a loopback TCP port that nothing listened on a moment ago."""
    import socket

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return pick
