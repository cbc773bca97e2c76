"""Thin command line over the concepts library (see ``python -m concepts --help``)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mamo.core.cli import parse_args, run
from mamo.core.config import load_config

#: reported as one line with exit status 2: the library raises ValueError for data it refuses
#: (a bad manifest or shard, a vocabulary of other data) and RuntimeError when spaCy's pipeline
#: or the tokenizer trainer is missing; config, file and store errors are the runner's own
USER_ERRORS = (ValueError, RuntimeError)


def _config(args: argparse.Namespace):
    from concepts.config import ConceptsConfig

    cfg = load_config(ConceptsConfig, args.config, args.overrides)
    if getattr(args, "quiet", False):
        cfg.show_progress = False
    return cfg


def cmd_build(args: argparse.Namespace) -> int:
    from concepts.build import build_concepts

    res = build_concepts(args.version_dir, _config(args), force=args.force)
    state = "built" if res.rebuilt else "up to date (nothing changed)"
    print(f"vocab_id {res.vocab_id}: {res.num_concepts} concepts, {state}\n  {res.path}")
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    from concepts.build import annotate_existing

    written = annotate_existing(args.version_dir, args.vocab_id, force=args.force,
                                show_progress=not args.quiet)
    print(f"wrote {len(written)} annotation file(s)" + (f": {', '.join(written)}" if written else ""))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from concepts.build import coverage, list_versions, top_concepts

    cov = coverage(args.version_dir, args.vocab_id)
    top = top_concepts(args.version_dir, args.top, args.vocab_id)
    if args.json:
        print(json.dumps({"coverage": cov, "top": [list(t) for t in top],
                          "versions": list_versions(args.version_dir)}, indent=1))
        return 0
    print(f"vocab_id {cov['vocab_id']}  ({cov['num_concepts']} concepts; versions here: "
          f"{', '.join(list_versions(args.version_dir))})")
    print(f"captions with a concept: {cov['captions_with_concept']}/{cov['captions']} "
          f"({100 * cov['caption_coverage']:.1f}%)")
    print(f"words carrying a concept: {cov['concept_words']}/{cov['words']} "
          f"({100 * cov['word_coverage']:.1f}%)")
    print(f"{'id':>6}  {'concept':<24} {'pos':<6} {'count':>8}")
    for cid, concept, pos, count in top:
        print(f"{cid:>6}  {concept:<24} {pos:<6} {count:>8}")
    return 0


def cmd_train_tokenizer(args: argparse.Namespace) -> int:
    from concepts.train_tokenizer import iter_version_captions, train_wordpiece

    cfg = _config(args)
    path = train_wordpiece(iter_version_captions(args.version_dir, cfg.show_progress), args.out,
                           cfg.tokenizer)
    n = sum(1 for _ in open(path, encoding="utf-8"))
    print(f"wrote {path} ({n} tokens); use it with concepts.tokenizer.load_tokenizer({str(path)!r})")
    return 0


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="YAML file (e.g. configs/concepts/default.yaml)")
    p.epilog = ("Settings can be overridden with dotted key=value arguments anywhere on the "
                "line, e.g. vocab.min_count=5 extract.pos=[NOUN,ADJ] (see concepts/config.py).")
    p.set_defaults(overrides=[])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m concepts", description=(
        "Concept vocabulary and per-shard annotations of a dataset version (spaCy lemmas)."))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="extract concepts, build a vocabulary version, annotate shards")
    p.add_argument("version_dir", type=Path)
    p.add_argument("--force", action="store_true", help="rebuild even if nothing changed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_config_args(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("annotate", help="(re)write missing annotation files of a vocabulary")
    p.add_argument("version_dir", type=Path)
    p.add_argument("--vocab-id", default="latest")
    p.add_argument("--force", action="store_true", help="rewrite existing files too")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser("show", help="top concepts and coverage of a vocabulary")
    p.add_argument("version_dir", type=Path)
    p.add_argument("--vocab-id", default="latest")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("train-tokenizer", help="train a WordPiece vocab.txt on the captions")
    p.add_argument("version_dir", type=Path)
    p.add_argument("--out", type=Path, required=True, help="directory for vocab.txt")
    p.add_argument("--quiet", action="store_true")
    _add_config_args(p)
    p.set_defaults(func=cmd_train_tokenizer)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Options and dotted overrides in any order; user errors are one line and exit 2."""
    args = parse_args(build_parser(), argv)
    return run(lambda: args.func(args), user_errors=USER_ERRORS,
               stage=f"concepts {args.command}", sigterm=True)
