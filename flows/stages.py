"""The stage cache and the child-process runner shared by the demo and the ablation.

A step is skipped when its output is there, valid, and was made with the same settings: a
:class:`Stamp` records a hash of the settings once the step has finished, and
:class:`Stages` runs named steps in order, redoing a step and everything after it when its
stamp, its output check or ``--force`` says so. Stage CLIs run as child processes
(:func:`run_cli`, :func:`start_cli`) in :func:`stage_env`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mamo.core.cli import UserError
from mamo.core.env import quiet_service_env
from mamo.core.files import write_json

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger(__name__)


def resolve(path: str | Path) -> Path:
    """A config path: absolute as given, relative to the repository otherwise."""
    return Path(path) if Path(path).is_absolute() else REPO / path


def stage_env(root: Path) -> dict[str, str]:
    """The environment of a stage's child process: quiet, offline services with Prefect's
    state under ``root``."""
    env = dict(quiet_service_env(prefect_home=root / ".prefect"))
    # tokenizers warn (and disable themselves) in forked DataLoader workers otherwise
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def run_cli(cmd: Sequence[str], env: dict[str, str] | None = None) -> None:
    """Run a stage's CLI in a child process (its own progress output goes to the console)."""
    log.info("$ %s", " ".join(cmd))
    r = subprocess.run(list(cmd), cwd=REPO, env=env)
    if r.returncode != 0:
        raise UserError(f"command failed with exit code {r.returncode}: {' '.join(cmd)}")


def start_cli(cmd: Sequence[str], log_file: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start a stage's CLI in the background, its output in ``log_file``."""
    log.info("$ %s  > %s", " ".join(cmd), log_file)
    return subprocess.Popen(list(cmd), cwd=REPO, env=env, stdout=log_file.open("w"),
                            stderr=subprocess.STDOUT)


class Stamp:
    """The record, beside a step's output, that the step finished with these settings."""

    def __init__(self, path: Path, params: Any):
        self.path = path
        self.params = params
        self.key = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.old: dict[str, Any] = {}
        if path.is_file():
            old = json.loads(path.read_text())
            self.old = old if isinstance(old, dict) else {}

    def matches(self) -> bool:
        return self.old.get("key") == self.key

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def write(self, seconds: float) -> None:
        write_json(self.path, {"key": self.key, "params": self.params, "seconds": seconds}, indent=None)


def banner(i: int, n: int, name: str, msg: str) -> None:
    print(f"\n=== [{i}/{n}] {name}: {msg}", flush=True)


class Stages:
    """Runs stages in order; a stage is skipped when its stamp (params hash) matches and its
    ``valid()`` check passes. Forcing a stage, or redoing it, invalidates the later ones."""

    def __init__(self, root: Path, names: Sequence[str], force: list[str]):
        self.root = root
        self.names = tuple(names)
        self.stamps = root / "stages"
        self.stamps.mkdir(parents=True, exist_ok=True)
        self.force = set(self.names) if "all" in force else set(force)
        self.redone = False
        self.timings: dict[str, float] = {}

    def run(self, name: str, params: dict[str, Any], valid: Callable[[], bool], do: Callable[[], None]) -> None:
        i, n = self.names.index(name) + 1, len(self.names)
        stamp = Stamp(self.stamps / f"{name}.json", params)
        if not self.redone and name not in self.force and stamp.matches() and valid():
            banner(i, n, name, f"done already (made in {stamp.old.get('seconds', '?')} s), skipped")
            return
        why = ("forced" if name in self.force else "an earlier stage was redone" if self.redone
               else "settings changed" if stamp.old else "first run")
        banner(i, n, name, f"running ({why})")
        stamp.clear()
        t0 = time.time()
        do()
        if not valid():
            raise UserError(f"stage {name} finished but its output is not valid; see the messages above")
        secs = round(time.time() - t0, 1)
        stamp.write(secs)
        self.timings[name] = secs
        self.redone = True
        print(f"--- {name} done in {secs} s", flush=True)
