"""One module per downstream task, each with ``finetune(ctx, model)`` and ``evaluate(ctx, model,
state)``; ``common`` holds the shared context (data, tokenizer, optimiser, batching)."""
from __future__ import annotations

import importlib
from types import ModuleType


def task_module(task: str) -> ModuleType:
    from mamo.downstream.config import TASKS

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return importlib.import_module(f"mamo.downstream.tasks.{task}")
