"""Deduplication across shards: each distinct caption through spaCy once per build, and the
files written exactly as the per-shard path (one spaCy pass per shard) writes them."""
import os
import subprocess
import sys

import pytest
from concepts_testdata import CAPTIONS, make_version, tree_bytes

from concepts.annotate import extract_shard
from concepts.build import build_concepts, plan_build
from concepts.config import ConceptsConfig, VocabConfig
from concepts.extract import ConceptExtractor, normalise_caption

LONG = "A dog " * 300 + "on a sofa"  # clipped at max_chars: dedup is on the clipped text
# repeats within and across shards, skipped captions, a clipped caption and its repeat
SHARDS = [CAPTIONS[:4] + [LONG, ""],
          CAPTIONS[2:6] + [b"\xff bad utf8", LONG],
          CAPTIONS[:2] + CAPTIONS[6:] + ["🙂", CAPTIONS[3]]]


def _outputs(vdir) -> dict[str, bytes]:
    """Every file the build wrote under concepts/, less lock files (not outputs)."""
    return {k: v for k, v in tree_bytes(vdir / "concepts").items() if not k.endswith(".lock")}


def cfg() -> ConceptsConfig:
    return ConceptsConfig(vocab=VocabConfig(min_count=1), show_progress=False)


def test_each_distinct_caption_parsed_once_per_build(tmp_path, monkeypatch):
    vdir = make_version(tmp_path, SHARDS)
    seen: list[str] = []
    real_parse = ConceptExtractor.parse

    def recording_parse(self, texts):  # the real spaCy pass, with its inputs recorded
        seen.extend(texts)
        return real_parse(self, texts)

    monkeypatch.setattr(ConceptExtractor, "parse", recording_parse)
    build_concepts(vdir, cfg())
    assert len(seen) == len(set(seen))  # nothing twice
    c = cfg().extract
    distinct = {normalise_caption(x.encode() if isinstance(x, str) else x, c.max_chars)[0]
                for shard in SHARDS for x in shard} - {None}
    assert set(seen) == distinct
    assert len(distinct) < sum(len(s) for s in SHARDS) - 4  # the data really repeats


def test_files_identical_to_the_per_shard_path(tmp_path):
    ours = make_version(tmp_path / "ours", SHARDS)
    res = build_concepts(ours, cfg())
    ref = make_version(tmp_path / "ref", SHARDS)
    # the per-shard path: each shard's extraction file from its own spaCy pass (as before
    # dedup across shards); the build then only counts and annotates from those files
    plan = plan_build(ref, cfg())
    for stem, tar in plan.shards:
        extract_shard(tar, plan.extracted_path(stem), ConceptExtractor(cfg().extract))
    twin = build_concepts(ref, cfg())
    assert twin.vocab_id == res.vocab_id
    assert _outputs(ours) == _outputs(ref)


@pytest.mark.skipif(not os.environ.get("MAMO_REFERENCE_TREE"),
                    reason="set MAMO_REFERENCE_TREE to a checkout of the code to compare with")
def test_files_identical_to_a_reference_tree(tmp_path):
    """Against another checkout's code (e.g. main before this change), run as a process."""
    ours = make_version(tmp_path / "ours", SHARDS)
    build_concepts(ours, cfg())
    ref = make_version(tmp_path / "ref", SHARDS)
    env = {**os.environ, "PYTHONPATH": os.environ["MAMO_REFERENCE_TREE"]}
    subprocess.run([sys.executable, "-m", "concepts", "build", str(ref), "vocab.min_count=1",
                    "--quiet"], check=True, env=env, cwd=os.environ["MAMO_REFERENCE_TREE"])
    assert _outputs(ours) == _outputs(ref)
