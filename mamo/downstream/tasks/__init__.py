"""One module per downstream task, each with ``training(ctx, model) -> TaskTraining`` (its
head, step and metadata, trained by the shared ``mamo.trainer`` loop), ``evaluate(ctx, model,
state)`` and, for tasks with a head, ``build_head(model, meta)``; ``common`` holds the shared
context (data, tokenizer, device) and the task interface."""
from __future__ import annotations

import importlib
from types import ModuleType


def task_module(task: str) -> ModuleType:
    from mamo.downstream.config import TASKS

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return importlib.import_module(f"mamo.downstream.tasks.{task}")
