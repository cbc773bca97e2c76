"""The quiet, offline environment for the services the pipeline starts (Prefect, Dask).

One place sets it, for this process or for a child's environment: no telemetry, no update
checks, warnings only, and a generous ephemeral-server start-up on slow machines.
"""
from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

QUIET_SERVICE_ENV: dict[str, str] = {
    "DO_NOT_TRACK": "1",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def quiet_service_env(env: MutableMapping[str, str] | None = None,
                      prefect_home: str | Path | None = None) -> MutableMapping[str, str]:
    """Fill ``env`` (default: a copy of ``os.environ``) with the quiet settings it lacks.

    Values already set win, so a user's ``PREFECT_LOGGING_LEVEL=DEBUG`` is kept.
    ``prefect_home`` keeps Prefect's state (its SQLite database) in a folder of the caller's.
    """
    env = dict(os.environ) if env is None else env
    for key, value in QUIET_SERVICE_ENV.items():
        env.setdefault(key, value)
    if prefect_home is not None:
        env.setdefault("PREFECT_HOME", str(Path(prefect_home).resolve()))
    return env


def apply_quiet_service_env(prefect_home: str | Path | None = None) -> None:
    """Set the quiet settings in this process (before Prefect is imported)."""
    quiet_service_env(os.environ, prefect_home=prefect_home)
