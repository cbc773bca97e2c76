"""The Prefect flows on a real (test) Prefect server and a small local Dask cluster."""
import pytest
from concepts_testdata import CAPTIONS, make_version, tree_bytes

from concepts.store import ConceptStore
from flows.concepts_flow import concepts_flow, rebuild_concepts_flow
from flows.registry import get_flow

pytestmark = pytest.mark.slow


def test_flows_build_noop_and_new_version(prefect_harness, tmp_path):
    assert get_flow("concepts") is concepts_flow
    assert get_flow("rebuild-concepts") is rebuild_concepts_flow
    vdir = make_version(tmp_path, [CAPTIONS[:3], CAPTIONS[3:6], CAPTIONS[6:] + ["", "🙂"]])
    tiny = ["vocab.min_count=1", "dask.n_workers=1", "dask.threads_per_worker=2"]
    first = concepts_flow(str(vdir), overrides=tiny)
    assert first["rebuilt"] and first["shards"] == 3 and first["cached_shards"] == 0
    store = ConceptStore(vdir)
    assert store.vocab_id == first["vocab_id"] and store.concepts[0] == "dog"
    assert sum(len(store.annotations(f"{i:05d}")) for i in range(3)) == 10
    old = tree_bytes(store.dir)

    # same data, same settings: nothing is done
    again = rebuild_concepts_flow(str(vdir), overrides=tiny)
    assert again == {"vocab_id": first["vocab_id"], "path": str(store.dir),
                     "num_concepts": store.num_concepts, "rebuilt": False}

    # a new threshold: a new version next to the old one, spaCy not run again
    changed = rebuild_concepts_flow(str(vdir), overrides=tiny + ["vocab.min_count=2"])
    assert changed["rebuilt"] and changed["vocab_id"] != first["vocab_id"]
    assert changed["cached_shards"] == 3
    assert ConceptStore(vdir).vocab_id == changed["vocab_id"]
    assert tree_bytes(store.dir) == old
    # the flow's output equals the sequential library build's (deterministic, same layout)
    from concepts.build import build_concepts
    from concepts.config import ConceptsConfig, VocabConfig
    twin = make_version(tmp_path / "twin", [CAPTIONS[:3], CAPTIONS[3:6], CAPTIONS[6:] + ["", "🙂"]])
    seq = build_concepts(twin, ConceptsConfig(vocab=VocabConfig(min_count=2), show_progress=False))
    assert seq.vocab_id == changed["vocab_id"]
    assert tree_bytes(seq.path) == tree_bytes(ConceptStore(vdir).dir)
