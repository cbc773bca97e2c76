"""Names under which flows are run (`python -m flows run NAME`) and served."""
from __future__ import annotations

import importlib
from typing import Any

from mamo.core.cli import UserError

FLOWS: dict[str, str] = {
    "ingest": "flows.ingest_flow:ingest_flow",
    "concepts": "flows.concepts_flow:concepts_flow",
    "rebuild-concepts": "flows.concepts_flow:rebuild_concepts_flow",
}


def get_flow(name: str) -> Any:
    if name not in FLOWS:
        raise UserError(f"unknown flow {name!r}; known: {', '.join(sorted(FLOWS))}")
    module, attr = FLOWS[name].split(":")
    return getattr(importlib.import_module(module), attr)
