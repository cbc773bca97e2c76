"""Real faults for the pipeline's fault tests: small tmpfs mounts (disk full), read-only
mounts, CLI runs as real processes (run to the end, or signalled mid-run)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


def env(**extra: str) -> dict[str, str]:
    """The test's environment with this tree first on PYTHONPATH (subprocesses import it)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in e.get("PYTHONPATH", "").split(
        os.pathsep) if p])
    e.update(extra)
    return e


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    """``python -m <args>`` to its end; text output captured."""
    return subprocess.run([PY, "-m", *args], cwd=REPO, env=kw.pop("env", None) or env(),
                          capture_output=True, text=True, timeout=kw.pop("timeout", 300), **kw)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", *args], cwd=REPO, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(pred, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    """Poll ``pred`` until true while ``proc`` runs; fails if ``proc`` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (rc {proc.returncode}) before {what}: {err[-2000:]}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def one_line_error(err: str) -> str:
    """The stderr of a CLI that failed as a user error: one ``error:`` line, no traceback."""
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (root only, as in CI); skips where mounting is refused."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (uid {os.getuid()}): {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount_readonly(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def fill(path: Path, leave: int = 0) -> Path:
    """A filler file taking all of ``path``'s free space but ``leave`` bytes."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    filler = path / "filler.bin"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def temp_files(root: Path) -> list[Path]:
    """Temp files of ``mamo.core.files`` (``.NAME.tmp-PID``) anywhere under ``root``."""
    return [p for p in Path(root).rglob(".*.tmp-*")]


def stats(paths) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of each file: unchanged means not rewritten."""
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in paths}
