"""``RunDir``: every path of a run directory, named once.

```
<run_dir>/
  config.yaml            # the resolved run config (written at start; checked on resume)
  data_versions.json     # the data the run reads: version, manifest digest, vocab id
  metrics.jsonl          # one JSON line per logged step
  checkpoints/step_0000100/{model.safetensors, state.pt, meta.json}
  final/{model.safetensors, config.yaml, meta.json}     # the exported model
  results.json           # evaluation results
  report/index.html      # the HTML report
```

Torch-free, so the CLIs, the public ``mamo.load`` and the orchestration can use it cheaply.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.yaml"
DATA_VERSIONS = "data_versions.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
FINAL = "final"
RESULTS = "results.json"
REPORT = "report"
WEIGHTS = "model.safetensors"
STATE = "state.pt"
META = "meta.json"
RANK_DIGESTS = "rank_digests.json"
HEAD = "head.safetensors"  # a fine-tuned dir's task head
TASK = "task.json"  # a fine-tuned dir's task and head metadata
_STEP_RE = re.compile(r"^step_(\d{7,})$")


def step_dir_name(step: int) -> str:
    return f"step_{step:07d}"


def step_of(path: str | Path) -> int | None:
    """The step of a ``step_NNNNNNN`` checkpoint dir, else None."""
    m = _STEP_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class CheckpointDir:
    """One saved model: a ``checkpoints/step_N`` dir or ``final/``."""

    path: Path

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    @property
    def state(self) -> Path:
        return self.path / STATE

    @property
    def meta(self) -> Path:
        return self.path / META

    @property
    def config(self) -> Path:
        """``final/`` carries its own config.yaml; step dirs use the run's."""
        return self.path / CONFIG

    @property
    def rank_digests(self) -> Path:
        """With several processes: every rank's state digest (they must be equal)."""
        return self.path / RANK_DIGESTS


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def data_versions(self) -> Path:
        return self.path / DATA_VERSIONS

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def checkpoint(self, step: int) -> CheckpointDir:
        return CheckpointDir(self.checkpoints / step_dir_name(step))

    @property
    def final(self) -> CheckpointDir:
        return CheckpointDir(self.path / FINAL)

    @property
    def results(self) -> Path:
        return self.path / RESULTS

    @property
    def report(self) -> Path:
        return self.path / REPORT

    @property
    def report_index(self) -> Path:
        return self.path / REPORT / "index.html"

    @property
    def finetuned(self) -> CheckpointDir:
        """A fine-tuned dir (``python -m mamo.finetune``) keeps its weights, ``head.safetensors``,
        ``task.json`` and ``rank_digests.json`` at its top level."""
        return CheckpointDir(self.path)

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files (``train.tensorboard=true``)."""
        return self.path / "tensorboard"

    def heatmaps(self, zero_shot: bool = False) -> Path:
        """Grounding's heat-map PNGs (after fine-tuning, or of the pre-trained backbone)."""
        return self.path / ("heatmaps_zero_shot" if zero_shot else "heatmaps")

    @property
    def head(self) -> Path:
        return self.path / HEAD

    @property
    def task(self) -> Path:
        return self.path / TASK

    def temp_dir(self, name: str, pid: int) -> Path:
        """A hidden staging dir inside the run dir (renamed into place when complete)."""
        return self.path / f".tmp_{name}_{pid}"

    @classmethod
    def above(cls, path: str | Path) -> RunDir | None:
        """The run dir at or above ``path`` (a run dir, a checkpoint dir or a weights file)."""
        path = Path(path)
        for p in [path, *path.parents]:
            if (p / CONFIG).is_file() and (p / CHECKPOINTS).is_dir() or (p / CONFIG).is_file() and (p / FINAL).is_dir():
                return cls(p)
        for p in [path, *path.parents]:
            if (p / CONFIG).is_file() and p.name != FINAL:
                return cls(p)
        return None
