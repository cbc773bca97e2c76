"""Per-step metrics: ``metrics.jsonl`` (one JSON object per optimizer step) and, optionally,
TensorBoard events. Only rank 0 writes.

On resume the file is cut back to the checkpoint's step first, so that steps logged after the
last checkpoint by the killed run are not duplicated: the file always reads as one run.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mamo.core.files import write_text
from mamo.run_dir import RunDir


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf: write them as strings so the file stays valid JSON Lines.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def truncate_after(path: str | Path, step: int) -> None:
    """Keep only records with ``step <= step`` (atomic rewrite; unreadable tail lines dropped)."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by SIGKILL
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= step:
            kept.append(line)
    write_text(path, "".join(line + "\n" for line in kept))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All complete records of a metrics file (for tests, reports and the benchmark)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class MetricsLogger:
    """Appends one record per step to the run's ``metrics.jsonl`` (``enabled``: rank 0 only)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = False):
        self.enabled = enabled
        self.path = RunDir(run_dir).metrics
        self._file = open(self.path, "a", encoding="utf-8") if enabled else None
        self._tb = None
        if enabled and tensorboard:
            try:  # optional dependency, imported only when asked for
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise RuntimeError("train.tensorboard=true needs the `tensorboard` package (pip install tensorboard)") from e
            self._tb = SummaryWriter(log_dir=str(RunDir(run_dir).tensorboard))

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        rec = {"step": step, **{k: _clean(v) for k, v in values.items()}}
        assert self._file is not None
        self._file.write(json.dumps(rec) + "\n")
        # Flush every step: a killed run keeps everything it logged.
        self._file.flush()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
