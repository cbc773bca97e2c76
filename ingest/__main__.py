"""``python -m ingest <command>``: a thin CLI over the ingest library."""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def _cmd_synthetic(a: argparse.Namespace) -> int:
    from mamo.core.config import from_dict

    from .synthetic import SyntheticConfig
    from .synthetic_version import write_synthetic_version

    cfg = from_dict(SyntheticConfig, {"n": a.n, "seed": a.seed, "image_size": a.image_size})
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
    from mamo.core.config import from_dict

    from .synthetic import SyntheticConfig
    from .synthetic_version import url_table_for, write_synthetic_url_source

    cfg = from_dict(SyntheticConfig, {"n": a.n, "seed": a.seed, "image_size": a.image_size})
    out = write_synthetic_url_source(a.out, cfg, image_format=a.format)
    if a.base_url:
        print(url_table_for(out, a.base_url))
    else:
        print(out)
    return 0


def _cmd_download(a: argparse.Namespace) -> int:
    from mamo.core.config import ConfigError, load_config

    from .config import IngestConfig
    from .pipeline import run_ingest

    try:
        cfg = load_config(IngestConfig, a.config, a.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    kinds = getattr(a, "kinds", None)
    if kinds and cfg.source.kind not in kinds:
        print(f"error: config key 'source.kind': `ingest {a.cmd}` takes {' / '.join(kinds)}, "
              f"got {cfg.source.kind!r} (use `ingest run` for any source)", file=sys.stderr)
        return 2
    m = run_ingest(cfg)
    print(json.dumps({"counts": m["counts"], "reasons": m.get("reasons", {}),
                      "shards": len(m["shards"])}))
    return 0


def _cmd_verify(a: argparse.Namespace) -> int:
    from .verify import verify_version

    report = verify_version(a.version_dir, deep=not a.quick)
    for line in report.problems:
        print(f"PROBLEM: {line}", file=sys.stderr)
    print(json.dumps(report.summary()))
    return 0 if report.ok else 1


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
    s.set_defaults(fn=_cmd_synthetic)

    s = sub.add_parser("synthetic-source",
                       help="write synthetic images + captions.jsonl to be served over HTTP")
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=int, default=2000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--image-size", type=int, default=128)
    s.add_argument("--format", choices=["png", "jpg"], default="png")
    s.add_argument("--base-url", default="", help="also write urls.parquet for this base URL")
    s.set_defaults(fn=_cmd_synthetic_source)

    s = sub.add_parser("run", help="ingest a source (URL table, COCO, Karpathy, folder) "
                       "described by a YAML config and dotted overrides")
    s.add_argument("--config", default=None)
    s.add_argument("overrides", nargs="*", help="dotted.key=value")
    s.set_defaults(fn=_cmd_download)

    for name, kinds, what in (("download", ("urls",), "a URL table through img2dataset"),
                              ("local", ("coco", "karpathy", "folder"),
                               "a local corpus (COCO captions, Karpathy JSON, image folder)")):
        s = sub.add_parser(name, help=f"ingest {what}; like `run`, checking source.kind")
        s.add_argument("--config", default=None)
        s.add_argument("overrides", nargs="*", help="dotted.key=value")
        s.set_defaults(fn=_cmd_download, kinds=kinds)

    s = sub.add_parser("verify", help="check a dataset version (checksums, counts, tars); "
                       "exit 1 on any problem")
    s.add_argument("version_dir")
    s.add_argument("--quick", action="store_true", help="skip decoding every image")
    s.set_defaults(fn=_cmd_verify)

    s = sub.add_parser("serve-dir", help="serve a directory over HTTP on 127.0.0.1 (demo)")
    s.add_argument("path")
    s.add_argument("--port", type=int, default=0)
    s.set_defaults(fn=_cmd_serve_dir)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # dotted overrides may follow options (argparse alone would reject "--config X a=b")
    args, extra = parser.parse_known_args(argv)
    bad = [e for e in extra if e.startswith("-") or "=" not in e]
    if bad or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(bad or extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
