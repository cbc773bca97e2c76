"""Building a concept vocabulary version of a dataset version, step by step.

The steps are separate functions so that the Prefect flow can run the per-shard ones in
parallel; ``build_concepts`` runs them in sequence (the CLI). A version is assembled in a
staging directory and renamed into place, then ``LATEST`` is switched: readers see either
the old or the new version, never half of one, and old versions are never modified.

One build at a time per dataset version: ``lock_build`` holds ``concepts/.lock``
(``mamo.core.lock``); a second build exits 2 naming the first. A build stopped by a signal or
a full disk keeps the shards it extracted (the cache), so a rerun extracts only the rest.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from tqdm import tqdm

from concepts.annotate import (EXTRACTED_DIR, annotate_shard, distinct_texts, extract_shard,
                               shard_captions, shard_counts, shard_texts, write_extraction)
from concepts.config import ConceptsConfig, ExtractConfig
from concepts.extract import ConceptExtractor, pipeline_identity
from concepts.store import (ANNOTATIONS_DIR, LATEST, META_FILE, VOCAB_FILE, ConceptStore,
                            concepts_root, read_latest, read_vocab_tsv)
from concepts.vocab import (build_key, build_vocab, canonical_json, compute_vocab_id,
                            merge_counts, meta_json_bytes, vocab_tsv_bytes)
from ingest.manifest import load_manifest, manifest_sha256
from mamo.core.files import temp_path, write_bytes, write_text
from mamo.core.lock import exclusive


@contextlib.contextmanager
def lock_build(version_dir: str | Path) -> Iterator[Path]:
    """Hold the concept-build lock of a dataset version; the holder alone writes under
    ``concepts/``, so staging dirs left by killed builds (other pids) are removed here."""
    root = concepts_root(version_dir)
    with exclusive(root, f"concept build of {Path(version_dir).resolve()}") as path:
        for stale in root.glob(".*.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
        for stale in root.glob(f"{EXTRACTED_DIR}/*/.*.tmp-*"):
            stale.unlink(missing_ok=True)
        yield path


@dataclass
class BuildPlan:
    """Everything a build depends on, resolved once (plain data: it travels to workers)."""

    version_dir: str
    manifest_sha256: str
    shards: list[tuple[str, str]]  # (stem, absolute tar path)
    pipeline: dict[str, str]
    params: dict[str, Any]
    extract_id: str
    key: str

    def extracted_path(self, stem: str) -> Path:
        return concepts_root(self.version_dir) / EXTRACTED_DIR / self.extract_id / f"{stem}.jsonl"


def shard_stem(shard: dict[str, Any]) -> str:
    """``"shards/00000.tar"`` -> ``"00000"`` (the annotation file has the same stem)."""
    return Path(shard["tar"]).stem


def output_params(cfg: ConceptsConfig) -> dict[str, Any]:
    """The settings that change what is written (batch sizes, workers, progress bars don't)."""
    e, v = cfg.extract, cfg.vocab
    extract = {"pos": sorted(set(e.pos)), "max_chars": e.max_chars,
               "require_alpha": e.require_alpha}
    if e.spatial_and_number_words:  # only when on: default builds keep their ids and bytes
        extract["spatial_and_number_words"] = True
    return {"extract": extract, "vocab": {"min_count": v.min_count, "max_size": v.max_size}}


def plan_build(version_dir: str | Path, cfg: ConceptsConfig) -> BuildPlan:
    version_dir = Path(version_dir).resolve()
    manifest = load_manifest(version_dir)
    msha = manifest_sha256(version_dir)
    pipeline = pipeline_identity(cfg.extract.pipeline)
    params = output_params(cfg)
    extract_id = hashlib.sha256(canonical_json(
        {"pipeline": pipeline, "extract": params["extract"], "manifest_sha256": msha})).hexdigest()[:16]
    shards = [(shard_stem(s), str(version_dir / s["tar"])) for s in manifest["shards"]]
    stems = [s for s, _ in shards]
    if len(set(stems)) != len(stems):
        raise ValueError(f"{version_dir}: shard file stems are not unique: {stems}")
    return BuildPlan(str(version_dir), msha, shards, pipeline, params, extract_id,
                     build_key(pipeline, params, msha))


def up_to_date(version_dir: str | Path, cfg: ConceptsConfig) -> str | None:
    """The LATEST vocab_id when it was built from this very data with these settings."""
    latest = read_latest(version_dir)
    if latest is None:
        return None
    meta_path = concepts_root(version_dir) / latest / META_FILE
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    plan = plan_build(version_dir, cfg)
    if meta.get("build_key") != plan.key:
        return None
    annotations = concepts_root(version_dir) / latest / ANNOTATIONS_DIR
    if any(not (annotations / f"{stem}.jsonl").is_file() for stem, _ in plan.shards):
        return None  # incomplete (files deleted by hand): a build puts them back
    return latest


def pending_shards(plan: BuildPlan) -> list[tuple[str, str]]:
    """The ``(stem, tar)`` of shards whose extraction file this plan does not have yet."""
    return [(stem, tar) for stem, tar in plan.shards if not plan.extracted_path(stem).is_file()]


def texts_step(tar_path: str, cfg: ConceptsConfig) -> list[str]:
    """First pass, per shard: its distinct normalised captions (no spaCy)."""
    return shard_texts(tar_path, cfg.extract.max_chars)


def shared_texts(per_shard: Iterable[list[str]]) -> list[str]:
    """The distinct texts of all shards, first occurrence first: what spaCy sees, once each."""
    return list(dict.fromkeys(t for texts in per_shard for t in texts))


def split_texts(texts: list[str], parts: int, min_size: int) -> list[list[str]]:
    """``texts`` in at most ``parts`` contiguous chunks of at least ``min_size`` (but one)."""
    size = max(min_size, -(-len(texts) // max(parts, 1)))
    return [texts[i:i + size] for i in range(0, len(texts), size)]


def parse_step(texts: list[str], cfg: ConceptsConfig) -> dict[str, tuple[list, int]]:
    """The shared pass: spaCy over distinct texts -> ``text -> (concepts, words)``."""
    return dict(zip(texts, ConceptExtractor(cfg.extract).parse(texts)))


def extract_step(plan: BuildPlan, stem: str, tar_path: str, cfg: ConceptsConfig,
                 known: dict[str, tuple[list, int]] | None = None) -> dict[str, Any]:
    """Write one shard's extraction file unless it exists for this plan (from ``known``,
    the shared pass's results, where given; spaCy runs only for texts missing there)."""
    out = plan.extracted_path(stem)
    if out.is_file():
        return {"stem": stem, "cached": True}
    stats = extract_shard(tar_path, out, ConceptExtractor(cfg.extract), known=known)
    return {"stem": stem, "cached": False, **stats}


def extract_all_step(plan: BuildPlan, cfg: ConceptsConfig, show_progress: bool = False
                     ) -> list[dict[str, Any]]:
    """Extract every shard, each distinct caption through spaCy once per build (sequential).

    Web corpora repeat captions across shards ("A photo of a dog."); a per-shard pass would
    pay spaCy again in every shard a repeat appears in. Each shard is read once: the
    captions of the shards to extract are held in memory until their files are written.
    """
    pending = {stem: shard_captions(tar) for stem, tar in plan.shards
               if not plan.extracted_path(stem).is_file()}
    texts = shared_texts(distinct_texts((raw for _, raw in samples), cfg.extract.max_chars)
                         for samples in pending.values())
    known = parse_step(texts, cfg) if texts else {}
    extractor = ConceptExtractor(cfg.extract)
    stats = []
    for stem, _ in tqdm(plan.shards, desc="extract concepts", unit="shard", disable=not show_progress):
        if stem not in pending:
            stats.append({"stem": stem, "cached": True})
            continue
        done = write_extraction(pending.pop(stem), plan.extracted_path(stem), extractor, known)
        stats.append({"stem": stem, "cached": False, **done})
    return stats


def vocab_step(plan: BuildPlan, cfg: ConceptsConfig) -> tuple[str, Path, dict[str, int]]:
    """Count, threshold and stage vocab.tsv + meta.json; returns (vocab_id, staging dir, ids)."""
    counters, tally = [], {"samples": 0, "skipped": 0, "with_concept": 0, "concept_words": 0,
                           "words": 0}
    for stem, _ in plan.shards:
        counts, t = shard_counts(plan.extracted_path(stem))
        counters.append(counts)
        for k in tally:
            tally[k] += t[k]
    counts = merge_counts(counters)
    entries = build_vocab(counts, cfg.vocab)
    tsv = vocab_tsv_bytes(entries)
    vocab_id = compute_vocab_id(tsv, plan.key)
    kept = sum(e.count for e in entries)
    stats = {**tally, "distinct_concepts": len({lemma for lemma, _ in counts}),
             "concept_words_in_vocab": kept}
    # the whole version is staged beside its final name and renamed into place (commit_step)
    staging = temp_path(concepts_root(plan.version_dir) / vocab_id)
    shutil.rmtree(staging, ignore_errors=True)  # a leftover of a killed build with this pid
    (staging / ANNOTATIONS_DIR).mkdir(parents=True)
    write_bytes(staging / VOCAB_FILE, tsv)  # (through mamo.core.files: errors name the file)
    write_bytes(staging / META_FILE, meta_json_bytes(
        vocab_id, plan.pipeline, plan.params, plan.manifest_sha256, plan.key, len(entries), stats))
    return vocab_id, staging, {e.concept: e.id for e in entries}


def annotate_step(plan: BuildPlan, stem: str, staging: str | Path, concept_to_id: dict[str, int],
                  vocab_id: str) -> dict[str, int]:
    out = Path(staging) / ANNOTATIONS_DIR / f"{stem}.jsonl"
    return annotate_shard(plan.extracted_path(stem), out, concept_to_id, vocab_id)


def write_latest(version_dir: str | Path, vocab_id: str) -> None:
    write_text(concepts_root(version_dir) / LATEST, vocab_id + "\n")


def _restore_missing(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.jsonl")):
        if not (dst / f.name).exists():
            os.replace(f, dst / f.name)


def commit_step(plan: BuildPlan, staging: str | Path, vocab_id: str) -> Path:
    """Move the staged version into place (unless identical content is there) and point LATEST."""
    staging = Path(staging)
    final = concepts_root(plan.version_dir) / vocab_id
    if final.is_dir():
        # same vocab_id = same content by construction: existing files stay untouched, only
        # annotation files lost since (deleted by hand) are put back
        _restore_missing(staging / ANNOTATIONS_DIR, final / ANNOTATIONS_DIR)
        shutil.rmtree(staging)
    else:
        try:
            os.rename(staging, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(staging)  # a concurrent build committed the same version first
    write_latest(plan.version_dir, vocab_id)
    return final


def discard_staging(staging: str | Path) -> None:
    """Remove a staging directory left by a failed build (no-op after a commit)."""
    if Path(staging).exists():
        shutil.rmtree(staging, ignore_errors=True)


@dataclass
class BuildResult:
    vocab_id: str
    path: Path
    num_concepts: int
    rebuilt: bool  # False: the existing LATEST already matched data and settings


def build_concepts(version_dir: str | Path, cfg: ConceptsConfig | None = None,
                   force: bool = False) -> BuildResult:
    """Extract, build the vocabulary, annotate every shard, commit (sequentially)."""
    cfg = cfg or ConceptsConfig()
    if not force:
        current = up_to_date(version_dir, cfg)
        if current is not None:
            store = ConceptStore(version_dir, current)
            return BuildResult(current, store.dir, store.num_concepts, rebuilt=False)
    plan = plan_build(version_dir, cfg)  # (refuses a version without a manifest, before locking)
    with lock_build(version_dir):
        return _build(plan, cfg)


def _build(plan: BuildPlan, cfg: ConceptsConfig) -> BuildResult:
    bar = not cfg.show_progress
    extract_all_step(plan, cfg, show_progress=cfg.show_progress)
    vocab_id, staging, ids = vocab_step(plan, cfg)
    try:
        for stem, _ in tqdm(plan.shards, desc="annotate", unit="shard", disable=bar):
            annotate_step(plan, stem, staging, ids, vocab_id)
        final = commit_step(plan, staging, vocab_id)
    finally:
        discard_staging(staging)
    return BuildResult(vocab_id, final, len(ids), rebuilt=True)


def annotate_existing(version_dir: str | Path, vocab_id: str = "latest", force: bool = False,
                      show_progress: bool = True) -> list[str]:
    """(Re)write missing annotation files of an existing vocabulary.

    From the extraction cache, or, where it is gone, by running spaCy again with the settings
    recorded in meta.json (refused if the installed pipeline differs). Returns the stems
    written.
    """
    with lock_build(version_dir):
        return _annotate_existing(version_dir, vocab_id, force, show_progress)


def _annotate_existing(version_dir: str | Path, vocab_id: str, force: bool,
                       show_progress: bool) -> list[str]:
    store = ConceptStore(version_dir, vocab_id)
    meta = store.meta
    manifest = load_manifest(version_dir)
    if manifest_sha256(version_dir) != meta["manifest_sha256"]:
        raise ValueError(f"vocabulary {store.vocab_id} was built from other data "
                         "(manifest sha256 differs); build a new one instead")
    extract_id = hashlib.sha256(canonical_json(
        {"pipeline": meta["spacy_pipeline"], "extract": meta["params"]["extract"],
         "manifest_sha256": meta["manifest_sha256"]})).hexdigest()[:16]
    extracted = concepts_root(version_dir) / EXTRACTED_DIR / extract_id
    written = []
    stems = [shard_stem(s) for s in manifest["shards"]]
    for stem in tqdm(stems, desc="annotate", unit="shard", disable=not show_progress):
        out = store.annotation_path(stem)
        if out.is_file() and not force:
            continue
        src = extracted / f"{stem}.jsonl"
        if not src.is_file():
            tar = Path(version_dir) / next(s["tar"] for s in manifest["shards"]
                                           if shard_stem(s) == stem)
            extract_shard(tar, src, ConceptExtractor(_extract_config_of(meta)))
        annotate_shard(src, out, store.concept_to_id, store.vocab_id)
        written.append(stem)
    return written


def _extract_config_of(meta: dict[str, Any]) -> ExtractConfig:
    """The extraction settings a vocabulary was built with, if this machine can reproduce them."""
    recorded = meta["spacy_pipeline"]
    installed = pipeline_identity(recorded["name"])
    if installed != recorded:
        raise ValueError(f"vocabulary {meta['vocab_id']} was extracted with {recorded}, but this "
                         f"environment has {installed}; build a new vocabulary instead")
    e = meta["params"]["extract"]
    return ExtractConfig(pipeline=recorded["name"], pos=list(e["pos"]), max_chars=e["max_chars"],
                         require_alpha=e["require_alpha"],
                         spatial_and_number_words=e.get("spatial_and_number_words", False))


def list_versions(version_dir: str | Path) -> list[str]:
    root = concepts_root(version_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith((".", "_")) and (p / META_FILE).is_file())


def coverage(version_dir: str | Path, vocab_id: str = "latest") -> dict[str, Any]:
    """Share of captions with at least one concept and share of words carrying one."""
    store = ConceptStore(version_dir, vocab_id)
    samples = with_span = spans = 0
    for path in sorted((store.dir / ANNOTATIONS_DIR).glob("*.jsonl")):
        for rec in _read_jsonl(path):
            samples += 1
            with_span += bool(rec["spans"])
            spans += len(rec["spans"])
    words = store.meta.get("stats", {}).get("words", 0)
    return {"vocab_id": store.vocab_id, "num_concepts": store.num_concepts, "captions": samples,
            "captions_with_concept": with_span,
            "caption_coverage": with_span / samples if samples else 0.0,
            "words": words, "concept_words": spans,
            "word_coverage": spans / words if words else 0.0}


def _read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def top_concepts(version_dir: str | Path, n: int = 20, vocab_id: str = "latest") -> list[tuple]:
    store = ConceptStore(version_dir, vocab_id)
    return read_vocab_tsv(store.dir / VOCAB_FILE)[:n]
