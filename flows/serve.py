"""Serving flows as deployments with cron schedules (``python -m flows serve --config``).

A serve config lists deployments::

    deployments:
      - flow: ingest                 # a name of flows.registry
        name: ingest-nightly
        cron: "0 3 * * *"
        config: configs/ingest/demo.yaml   # passed as the flow's config_path
        overrides: ["version=nightly"]     # passed as the flow's overrides
        parameters: {}                     # any other flow parameters (e.g. version_dir)

Schedules need a real Prefect server (``prefect server start``) whose URL is in
``PREFECT_API_URL``; serving blocks until interrupted (SIGINT/SIGTERM).
"""
from __future__ import annotations

import os
from dataclasses import field
from typing import Annotated, Any

from pydantic import Field

from mamo.core.cli import UserError
from mamo.core.config import check, load_config, section


@section
class DeploymentConfig:
    flow: str = "ingest"
    name: str = ""
    # empty: no schedule (run on demand with run_deployment); else 5 (or 6) cron fields
    cron: Annotated[str, Field(pattern=r"^((\S+\s+){4,5}\S+)?$")] = ""
    timezone: str = "UTC"
    config: str = ""
    overrides: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from flows.registry import FLOWS  # the registry is the list of flows

        check(self.flow in FLOWS, "flow", f"unknown flow {self.flow!r}; known: {sorted(FLOWS)}")


@section
class ServeConfig:
    deployments: Annotated[list[DeploymentConfig], Field(min_length=1)]  # required

    def __post_init__(self) -> None:
        names = [d.name or d.flow for d in self.deployments]
        check(len(set(names)) == len(names), "deployments", f"names must be unique: {names}")


def flow_parameters(flow_obj: Any, config_path: str | None, overrides: list[str],
                    extra: dict[str, Any]) -> dict[str, Any]:
    """Map our conventions onto a flow's signature: every registered flow takes
    ``config_path`` and ``overrides``; anything else comes from ``extra``."""
    params = dict(extra)
    names = set(flow_obj.parameters.properties)
    if "config_path" in names and config_path:
        params["config_path"] = config_path
    if "overrides" in names and overrides:
        params["overrides"] = list(overrides)
    unknown = set(params) - names
    if unknown:
        raise UserError(f"flow {flow_obj.name!r} has no parameter(s) {sorted(unknown)}; "
                        f"it takes {sorted(names)}")
    missing = [n for n in flow_obj.parameters.required or [] if n not in params]
    if missing:
        raise UserError(f"flow {flow_obj.name!r} needs parameter(s) {missing} "
                        "(pass NAME=VALUE)")
    return params


def build_deployments(cfg: ServeConfig) -> list[Any]:
    from flows.registry import get_flow

    out = []
    for d in cfg.deployments:
        f = get_flow(d.flow)
        params = flow_parameters(f, os.path.abspath(d.config) if d.config else None,
                                 d.overrides, d.parameters)
        kwargs: dict[str, Any] = {"name": d.name or d.flow, "parameters": params}
        if d.cron:
            from prefect.client.schemas.schedules import CronSchedule

            kwargs["schedules"] = [CronSchedule(cron=d.cron, timezone=d.timezone)]
        out.append(f.to_deployment(**kwargs))
    return out


def serve(config_path: str | None, overrides: list[str] | None = None) -> None:
    """Register the deployments and run their scheduled flow runs until interrupted."""
    if not os.environ.get("PREFECT_API_URL"):
        raise UserError("serving needs a Prefect server: start one with `prefect server start "
                        "--host 127.0.0.1 --port 4200` and set "
                        "PREFECT_API_URL=http://127.0.0.1:4200/api")
    cfg = load_config(ServeConfig, config_path, overrides or [])
    from prefect import serve as prefect_serve

    prefect_serve(*build_deployments(cfg), print_starting_message=True)
