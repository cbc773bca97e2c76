"""``python -m ingest <command>``: a thin CLI over the ingest library."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from mamo.core.cli import parse_args, run
from mamo.core.config import ConfigError

from .img2dataset_runner import DistributorUnavailable
from .manifest import ManifestError
from .shards import ShardReadError
from .version import VersionExistsError

if TYPE_CHECKING:
    from .synthetic import SyntheticConfig

#: conditions a user causes and fixes, reported as one line with exit status 2
USER_ERRORS = (VersionExistsError, DistributorUnavailable, ManifestError, ShardReadError)


def _kind_weights(text: str) -> list[float]:
    """``"1,1,2"`` -> ``[1.0, 1.0, 2.0]`` (the config checks the length and the signs)."""
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated numbers expected, got {text!r}") from None


def _synthetic_config(a: argparse.Namespace) -> SyntheticConfig:
    from mamo.core.config import from_dict

    from .synthetic import SyntheticConfig

    data = {"n": a.n, "seed": a.seed, "image_size": a.image_size, "twins": a.twins}
    if a.kind_weights is not None:
        data["kind_weights"] = a.kind_weights
    return from_dict(SyntheticConfig, data)


def _cmd_synthetic(a: argparse.Namespace) -> int:
    from .synthetic_version import write_synthetic_version

    cfg = _synthetic_config(a)
    if a.via_http:
        from .synthetic_version import ingest_synthetic_over_http

        m = ingest_synthetic_over_http(a.out, a.dataset, a.version, cfg,
                                       samples_per_shard=a.samples_per_shard,
                                       processes=a.processes, overwrite=a.overwrite)
    else:
        m = write_synthetic_version(a.out, a.dataset, a.version, cfg, a.samples_per_shard,
                                    overwrite=a.overwrite)
    print(json.dumps({"version_dir": os.path.join(a.out, a.dataset, a.version),
                      "counts": m["counts"], "shards": len(m["shards"])}))
    return 0


def _cmd_synthetic_source(a: argparse.Namespace) -> int:
    from .synthetic_version import url_table_for, write_synthetic_url_source

    cfg = _synthetic_config(a)
    out = write_synthetic_url_source(a.out, cfg, image_format=a.format)
    if a.base_url:
        print(url_table_for(out, a.base_url))
    else:
        print(out)
    return 0


def _cmd_download(a: argparse.Namespace) -> int:
    from mamo.core.config import load_config

    from .config import IngestConfig
    from .pipeline import run_ingest

    overrides = list(a.overrides)
    if getattr(a, "retry_failed", None):
        from .retry import retry_overrides

        overrides = retry_overrides(a.retry_failed) + overrides
    cfg = load_config(IngestConfig, a.config, overrides)
    kinds = getattr(a, "kinds", None)
    if kinds and cfg.source.kind not in kinds:
        raise ConfigError("source.kind", f"`ingest {a.cmd}` takes {' / '.join(kinds)}, got "
                          f"{cfg.source.kind!r} (use `ingest run` for any source)")
    m = run_ingest(cfg)
    print(json.dumps({"counts": m["counts"], "reasons": m.get("reasons", {}),
                      "shards": len(m["shards"])}))
    return 0


def _cmd_verify(a: argparse.Namespace) -> int:
    from pathlib import Path

    from mamo.core.cli import UserError

    from .verify import verify_version

    if not Path(a.version_dir).is_dir():  # a wrong path, not a damaged version (exit 1)
        raise UserError(f"{a.version_dir}: no such directory (give a dataset version dir)")
    report = verify_version(a.version_dir, deep=not a.quick)
    for line in report.problems:
        print(f"PROBLEM: {line}", file=sys.stderr)
    print(json.dumps(report.summary()))
    return 0 if report.ok else 1


def _cmd_decontaminate(a: argparse.Namespace) -> int:
    from pathlib import Path

    from mamo.core.cli import UserError

    from .near_dup import overlaps

    for v in (a.version_dir, a.against):
        if not (Path(v) / "manifest.json").is_file():
            raise UserError(f"{v}: not a dataset version (no manifest.json)")
    found = overlaps(a.version_dir, a.against, a.distance, a.captions)
    for o in found[:a.show]:
        print(json.dumps(o), file=sys.stderr)
    print(json.dumps({"version_dir": a.version_dir, "against": a.against,
                      "distance": a.distance, "overlaps": len(found),
                      "by_image": sum(o["by"] == "image" for o in found),
                      "by_caption": sum(o["by"] == "caption" for o in found)}))
    return 0


def _cmd_serve_dir(a: argparse.Namespace) -> int:
    import time

    from .http_server import serve_directory

    with serve_directory(a.path, port=a.port) as base:
        print(base, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


def _add_scene_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--twins", type=float, default=0.0, metavar="SHARE",
                   help="share of sample pairs (2k, 2k+1) generated as twins: same objects, the "
                   "relation, count or size changed (synthetic.twins; default 0)")
    s.add_argument("--kind-weights", type=_kind_weights, default=None, metavar="A,B,C",
                   help="relative frequency of single, count and relation scenes "
                   "(synthetic.kind_weights; default 1,1,1)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ingest", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("synthetic", help="write the synthetic data set as a dataset version")
    s.add_argument("--out", required=True, help="root directory (<root>/<dataset>/<version>)")
    s.add_argument("--dataset", default="synthetic")
    s.add_argument("--version", default="v1")
    s.add_argument("--n", type=int, default=2000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--image-size", type=int, default=96)
    s.add_argument("--samples-per-shard", type=int, default=1000)
    s.add_argument("--overwrite", action="store_true", help="replace a complete version")
    s.add_argument("--via-http", action="store_true",
                   help="serve the images from a loopback HTTP server and ingest them through "
                   "the real download path (img2dataset)")
    s.add_argument("--processes", type=int, default=2, help="img2dataset processes (--via-http)")
    _add_scene_options(s)
    s.set_defaults(fn=_cmd_synthetic)

    s = sub.add_parser("synthetic-source",
                       help="write synthetic images + captions.jsonl to be served over HTTP")
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=int, default=2000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--image-size", type=int, default=128)
    s.add_argument("--format", choices=["png", "jpg"], default="png")
    s.add_argument("--base-url", default="", help="also write urls.parquet for this base URL")
    _add_scene_options(s)
    s.set_defaults(fn=_cmd_synthetic_source)

    s = sub.add_parser("run", help="ingest a source (URL table, COCO, Karpathy, folder) "
                       "described by a YAML config and dotted overrides")
    s.add_argument("--config", default=None)
    s.add_argument("overrides", nargs="*", help="dotted.key=value")
    s.add_argument("--retry-failed", metavar="VERSION_DIR", default=None,
                   help="ingest only the transiently failed rows (timeout, 5xx, refused, "
                   "rate_limited) of this earlier version, into the configured new version")
    s.set_defaults(fn=_cmd_download)

    for name, kinds, what in (("download", ("urls",), "a URL table through img2dataset"),
                              ("local", ("coco", "karpathy", "folder"),
                               "a local corpus (COCO captions, Karpathy JSON, image folder)")):
        s = sub.add_parser(name, help=f"ingest {what}; like `run`, checking source.kind")
        s.add_argument("--config", default=None)
        s.add_argument("overrides", nargs="*", help="dotted.key=value")
        if name == "download":
            s.add_argument("--retry-failed", metavar="VERSION_DIR", default=None,
                           help="as for `run`")
        s.set_defaults(fn=_cmd_download, kinds=kinds)

    s = sub.add_parser("verify", help="check a dataset version (checksums, counts, tars); "
                       "exit 1 on any problem")
    s.add_argument("version_dir")
    s.add_argument("--quick", action="store_true", help="skip decoding every image")
    s.set_defaults(fn=_cmd_verify)

    s = sub.add_parser("decontaminate", help="report the samples of a version whose image is a "
                       "near-duplicate of one in another version (e.g. an eval set)")
    s.add_argument("version_dir")
    s.add_argument("--against", required=True, metavar="EVAL_VERSION_DIR")
    s.add_argument("--distance", type=int, default=6, help="max Hamming distance of the hashes")
    s.add_argument("--captions", action="store_true", help="identical captions count too")
    s.add_argument("--show", type=int, default=20, help="overlaps listed on stderr")
    s.set_defaults(fn=_cmd_decontaminate)

    s = sub.add_parser("serve-dir", help="serve a directory over HTTP on 127.0.0.1 (demo)")
    s.add_argument("path")
    s.add_argument("--port", type=int, default=0)
    s.set_defaults(fn=_cmd_serve_dir)
    return p


def main(argv: list[str] | None = None) -> int:
    """Options and dotted overrides in any order; user errors are one line and exit 2."""
    args = parse_args(build_parser(), argv)
    return run(lambda: args.fn(args), user_errors=USER_ERRORS, stage=f"ingest {args.cmd}",
               sigterm=True)


if __name__ == "__main__":
    sys.exit(main())
