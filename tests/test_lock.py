"""mamo.core.lock: a second writer is refused naming the holder; a dead holder's lock is taken over."""
import json
import os
import subprocess
import sys

import pytest

from mamo.core.lock import LockHeld, exclusive

HOLD = "import sys, time; from mamo.core.lock import exclusive\nwith exclusive(sys.argv[1], 'training'):\n    print('held', flush=True); time.sleep(60)"


def test_second_writer_is_refused_naming_the_holder(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=f"training by pid {p.pid}"):
            with exclusive(tmp_path, "training"):
                pass
    finally:
        p.kill()
        p.wait()


def test_dead_holder_is_taken_over_with_a_warning(tmp_path, caplog):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    p.kill()  # SIGKILL: the lock file keeps its content, the kernel frees the flock
    p.wait()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == p.pid
    with caplog.at_level("WARNING"):
        with exclusive(tmp_path, "evaluation"):
            assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert f"stale lock of pid {p.pid}" in caplog.text


def test_release_leaves_no_stale_holder(tmp_path, caplog):
    with exclusive(tmp_path, "a"):
        pass
    with caplog.at_level("WARNING"):
        with exclusive(tmp_path, "b"):
            pass
    assert "stale" not in caplog.text
