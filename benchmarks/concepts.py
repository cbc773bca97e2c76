"""Concept extraction throughput: ours (dedup + filtering) vs bare spaCy ``nlp.pipe``.

Both use the same components (tok2vec, tagger, attribute_ruler, lemmatizer) in the same process,
measured alternately; the best of ``--repeats`` runs counts. The baselines run the stock spaCy
pipeline; ours runs ``load_nlp``'s, whose attribute_ruler looks one-token rules up per token
(same output, tested). Two baselines:
``pipe``: docs produced and dropped (spaCy's own cost, the floor for any extractor), and
``pipe+filter``: the same lemma/POS/stop-word filtering written inline, without dedup.
Corpora: (a) all captions unique, (b) ~30% of captions repeat an earlier one, both in one
``extract`` call; then the build's extraction pass over a dataset version of ``--shards``
shards on disk (tar reading and extraction files included, which bare ``nlp.pipe`` does not
pay): (c) ~30% repeats spread across shards, (d) unique captions; there the per-shard path
(one spaCy pass per shard, dedup within a shard only: the build before issue 19) is a
second baseline.

    python -m benchmarks.concepts [--n 2000] [--shards 8] [--repeats 3]
    python -m benchmarks.concepts --smoke
"""
from __future__ import annotations

import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import Report
from concepts.annotate import EXTRACTED_DIR, extract_shard
from concepts.build import extract_all_step, plan_build
from concepts.config import ConceptsConfig, ExtractConfig
from concepts.extract import ConceptExtractor, RuleMatches, load_nlp
from concepts.store import concepts_root
from ingest.manifest import build_manifest, write_manifest
from ingest.shards import ShardWriter

SUBJECTS = ["dog", "cat", "man", "woman", "child", "horse", "bird", "car", "boat", "train",
            "skier", "surfer", "cyclist", "chef", "player", "cow", "goose", "truck", "girl", "boy"]
ADJS = ["red", "small", "old", "young", "snowy", "wooden", "large", "happy", "dark", "bright",
        "wet", "busy", "quiet", "green", "tall", "striped"]
VERBS = ["running", "sitting", "standing", "jumping", "walking", "riding", "eating", "looking",
         "playing", "resting", "waiting", "swimming"]
PLACES = ["field", "beach", "street", "park", "kitchen", "lake", "forest", "road", "table",
          "river", "mountain", "station", "market", "garden", "bridge", "room"]
PREPS = ["across", "near", "on", "in", "beside", "behind", "under", "along"]


def make_captions(n: int, repeat_share: float, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    seen: set[str] = set()
    uniques: list[str] = []
    n_unique = round(n * (1 - repeat_share))
    while len(uniques) < n_unique:
        cap = (f"A {rng.choice(ADJS)} {rng.choice(SUBJECTS)} is {rng.choice(VERBS)} "
               f"{rng.choice(PREPS)} the {rng.choice(ADJS)} {rng.choice(PLACES)} "
               f"with a {rng.choice(ADJS)} {rng.choice(SUBJECTS)}")
        if cap not in seen:
            seen.add(cap)
            uniques.append(cap)
    out = uniques + [rng.choice(uniques) for _ in range(n - n_unique)]
    rng.shuffle(out)
    return out


def bare_pipe(nlp, captions: list[str], batch_size: int) -> int:
    n = 0
    for doc in nlp.pipe(captions, batch_size=batch_size):
        n += len(doc)
    return n


def pipe_filter(nlp, captions: list[str], batch_size: int, pos: frozenset) -> int:
    n = 0
    for doc in nlp.pipe(captions, batch_size=batch_size):
        n += len([(t.idx, t.lemma_.lower()) for t in doc if t.pos_ in pos and not t.is_stop])
    return n


def write_version(root: Path, captions: list[str], shards: int) -> Path:
    """A dataset version whose shard i holds captions i, i+shards, ... (repeats land in other
    shards than their first occurrence, as in a web corpus)."""
    vdir = root / f"v{len(captions)}_{shards}_{len(set(captions))}"
    infos = []
    for si in range(shards):
        w = ShardWriter(vdir, si)
        for j in range(si, len(captions), shards):
            w.add(f"k{j:07d}", b"\xff\xd8\xff\xd9", captions[j], {"key": f"k{j:07d}"})
        infos.append(w.close().as_dict())
    n = len(captions)
    write_manifest(vdir, build_manifest("bench", vdir.name, {"kind": "benchmark"}, {},
                                        {"input": n, "written": n}, infos))
    return vdir


def build_pass(vdir: Path, cfg: ConceptsConfig, stock_nlp=None) -> None:
    """The build's extraction pass from an empty cache: the shared pass (this build), or with
    ``stock_nlp`` the per-shard path before issue 19 (a spaCy pass per shard, stock spaCy)."""
    shutil.rmtree(concepts_root(vdir) / EXTRACTED_DIR, ignore_errors=True)
    plan = plan_build(vdir, cfg)
    if stock_nlp is None:
        cold_rules()
        extract_all_step(plan, cfg)
    else:
        for stem, tar in plan.shards:
            extract_shard(tar, plan.extracted_path(stem), ConceptExtractor(cfg.extract, nlp=stock_nlp))


def cold_rules() -> None:
    """Forget the cached one-token rule matches: each timed run of ours starts cold."""
    match = load_nlp().get_pipe("attribute_ruler").match
    if isinstance(match, RuleMatches):
        match.cache.clear()


def measure(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """name -> (best CPU seconds, best wall seconds); runs interleaved A B C A B C ...

    CPU time of this process is the primary figure: the machine is shared, and other
    processes' load inflates wall time unevenly between runs.
    """
    best = {k: (float("inf"), float("inf")) for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            c, w = time.process_time() - c0, time.perf_counter() - w0
            best[name] = (min(best[name][0], c), min(best[name][1], w))
    return best


def main(argv: list[str] | None = None) -> int:
    ap = harness.parser(__doc__)
    ap.add_argument("--n", type=int, default=2000, help="captions per corpus")
    ap.add_argument("--shards", type=int, default=8, help="shards of the on-disk versions")
    ap.add_argument("--repeats", type=int, default=3)
    args = harness.parse(ap, argv)
    if args.smoke:
        args.n, args.repeats, args.shards = 40, 1, 4
    cfg = ExtractConfig()
    nlp = load_nlp(cfg.pipeline, cached_rules=False)  # the baselines: stock spaCy
    extractor = ConceptExtractor(cfg)  # ours: load_nlp's default (cached one-token rules)
    pos = frozenset(cfg.pos)
    bare_pipe(nlp, make_captions(200, 0.0, seed=99), cfg.batch_size)  # warm-up
    extractor.extract(make_captions(200, 0.0, seed=98))
    rep = Report(f"concept extraction, pipeline {cfg.pipeline} -> {nlp.pipe_names}", {
        "n": args.n, "best_of": f"{args.repeats} interleaved runs"}, args.out)
    for label, share in (("(a) unique captions", 0.0), ("(b) ~30% repeats", 0.3)):
        caps = make_captions(args.n, share)
        res = measure({"bare nlp.pipe": lambda: bare_pipe(nlp, caps, cfg.batch_size),
                       "nlp.pipe + filter": lambda: pipe_filter(nlp, caps, cfg.batch_size, pos),
                       "ours (ConceptExtractor)": lambda: (cold_rules(), extractor.extract(caps))},
                      args.repeats)
        n = len(caps)
        cpu, wall = res.pop("ours (ConceptExtractor)")
        for base, (base_cpu, base_wall) in res.items():
            rep.row("captions per CPU second", f"{label}, distinct {len(set(caps))}/{n}", "ours (ConceptExtractor)",
                    n / cpu, base, n / base_cpu, "captions/CPU-s", wall_captions_per_s=round(n / wall),
                    base_wall_captions_per_s=round(n / base_wall))
    ccfg = ConceptsConfig(show_progress=False)
    with tempfile.TemporaryDirectory(prefix="bench-concepts-") as tmp:
        for label, share in (("(c) ~30% repeats across shards", 0.3), ("(d) unique, shards", 0.0)):
            caps = make_captions(args.n, share, seed=1)
            vdir = write_version(Path(tmp), caps, args.shards)
            res = measure({"bare nlp.pipe": lambda: bare_pipe(nlp, caps, cfg.batch_size),
                           "per-shard pass (before)": lambda: build_pass(vdir, ccfg, stock_nlp=nlp),
                           "ours (shared pass)": lambda: build_pass(vdir, ccfg)},
                          args.repeats)
            n = len(caps)
            cpu, wall = res.pop("ours (shared pass)")
            for base, (base_cpu, base_wall) in res.items():
                rep.row("captions per CPU second",
                        f"{label}, {args.shards} shards, distinct {len(set(caps))}/{n}",
                        "ours (shared pass)", n / cpu, base, n / base_cpu, "captions/CPU-s",
                        wall_captions_per_s=round(n / wall),
                        base_wall_captions_per_s=round(n / base_wall))
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
