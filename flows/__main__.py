"""``python -m flows``: run a flow once, or serve deployments on schedules.

    python -m flows list
    python -m flows run NAME [--config YAML] [PARAM=VALUE ...] [dotted.key=value ...]
    python -m flows serve --config configs/flows/serve.yaml

``run`` uses an ephemeral Prefect server unless ``PREFECT_API_URL`` is set. Every registered
flow takes ``config_path`` (from ``--config``) and ``overrides`` (the dotted ``key=value``
arguments); a ``NAME=VALUE`` whose NAME is another parameter of the flow (e.g.
``version_dir=...`` for the concepts flows) is passed to the flow as that parameter.

The demo and the ablation, which run the whole pipeline, are ``python -m flows.demo`` and
``python -m flows.ablation``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from mamo.core.cli import UserError, parse_args, run
from mamo.core.env import apply_quiet_service_env

# here Prefect's INFO log is the flow run's progress; the rest of the quiet environment applies
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
apply_quiet_service_env()


def _split_args(flow_obj, items: list[str]) -> tuple[dict[str, str], list[str]]:
    names = set(flow_obj.parameters.properties) - {"config_path", "overrides"}
    params, overrides = {}, []
    for it in items:
        key, sep, value = it.partition("=")
        if not sep:
            raise UserError(f"expected NAME=VALUE or dotted.key=value, got {it!r}")
        if key in names:
            params[key] = value
        else:
            overrides.append(it)
    return params, overrides


def _cmd_run(a: argparse.Namespace) -> int:
    from flows.registry import get_flow
    from flows.serve import flow_parameters

    f = get_flow(a.name)
    params, overrides = _split_args(f, a.overrides)
    config = os.path.abspath(a.config) if a.config else None
    result = f(**flow_parameters(f, config, overrides, params))
    print(json.dumps(result, default=str, indent=1))
    return 0


def _cmd_serve(a: argparse.Namespace) -> int:
    from flows.serve import serve

    serve(a.config, a.overrides)
    return 0


def _cmd_list(a: argparse.Namespace) -> int:
    from flows.registry import FLOWS

    for name, target in sorted(FLOWS.items()):
        print(f"{name}\t{target}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m flows", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("run", help="run one flow once (ephemeral Prefect unless "
                       "PREFECT_API_URL is set)")
    s.add_argument("name", help="flow name (see `python -m flows list`)")
    s.add_argument("--config", default=None, help="YAML config of the flow's stage")
    s.add_argument("overrides", metavar="ITEM", nargs="*", help="PARAM=VALUE or dotted.key=value overrides")
    s.set_defaults(fn=_cmd_run)
    s = sub.add_parser("serve", help="serve deployments with cron schedules (needs "
                       "PREFECT_API_URL)")
    s.add_argument("--config", default=None, help="serve YAML (see flows/serve.py)")
    s.add_argument("overrides", nargs="*", help="dotted.key=value")
    s.set_defaults(fn=_cmd_serve)
    s = sub.add_parser("list", help="list flow names")
    s.set_defaults(fn=_cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def cli() -> int:
        args = parse_args(parser, argv)
        return args.fn(args)

    return run(cli)


if __name__ == "__main__":
    sys.exit(main())
