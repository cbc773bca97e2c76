"""Fine-grained negatives: exactly one thing changed, never the true caption, false of the image."""
import numpy as np

from ingest.synthetic import generate_scene, relation_holds, render_caption
from mamo.evaluation.finegrained import (
    CHANGE_TYPES,
    accuracy_table,
    build_items,
    evaluate_finegrained,
    make_negatives,
    score_items,
)


def _diff(a, b, path=""):
    """Leaf paths where two nested structures differ."""
    if isinstance(a, dict):
        return [d for k in a for d in _diff(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


SCENES = [generate_scene(3, i) for i in range(300)]


def test_each_negative_changes_exactly_one_thing():
    seen = set()
    for scene in SCENES:
        truth = render_caption(scene)
        negs = make_negatives(scene, np.random.default_rng(0))
        assert len({n.change for n in negs}) == len(negs)  # one per change type
        for n in negs:
            seen.add(n.change)
            assert n.caption != truth
            assert render_caption(n.scene) == n.caption
            changed = _diff(scene, n.scene)
            if scene["spec"]["kind"] == "count" and n.change in ("color", "shape", "size"):
                # the identical counted copies change together: one attribute, every copy
                assert {p.rsplit(".", 1)[1] for p in changed} == {n.change}
                assert len(changed) == len(scene["objects"])
            else:
                assert len(changed) == 1, (changed, n)
            # exactly one caption word changed (relations and plurals are one word too)
            tw, nw = truth.split(), n.caption.split()
            assert len(tw) == len(nw) and sum(x != y for x, y in zip(tw, nw)) == 1
    assert seen == set(CHANGE_TYPES)


def test_negatives_are_false_of_the_image():
    for scene in SCENES:
        spec = scene["spec"]
        for n in make_negatives(scene, np.random.default_rng(1)):
            if n.change in ("left_right", "above_below"):
                subj = scene["objects"][spec["subject"]]["box"]
                obj = scene["objects"][spec["object"]]["box"]
                assert not relation_holds(subj, obj, n.scene["spec"]["relation"])
            if spec["kind"] == "relation" and n.change in ("color", "shape", "size"):
                a, b = n.scene["objects"][spec["subject"]], n.scene["objects"][spec["object"]]
                assert (a["shape"], a["color"], a["size"]) != (b["shape"], b["color"], b["size"])


def test_items_are_deterministic_and_scored():
    keys = [f"k{i}" for i in range(len(SCENES))]
    items = build_items(keys, SCENES, seed=5)
    assert items == build_items(keys, SCENES, seed=5)
    truths = {it.image_index: it.true_caption for it in items}

    def oracle(idx, caps):  # knows the truth: always right
        return np.array([1.0 if truths[int(i)] == c else 0.0 for i, c in zip(idx, caps)])

    def constant(idx, caps):  # ties are wrong
        return np.zeros(len(caps))

    res = evaluate_finegrained(items, {"oracle": oracle, "constant": constant})
    assert res["oracle"]["overall"] == 100.0
    assert res["constant"]["overall"] == 0.0
    assert set(CHANGE_TYPES) <= set(res["oracle"])
    assert res["oracle"]["n_items"] == len(items)

    rng = np.random.default_rng(0)
    acc = accuracy_table(items, score_items(items, lambda i, c: rng.normal(size=len(c))))
    assert 35 < acc["overall"] < 65  # a random scorer is near chance


def test_items_per_type_caps_each_type_with_a_prefix_of_the_full_set():
    from mamo.evaluation.finegrained import items_per_type

    keys = [f"k{i}" for i in range(len(SCENES))]
    full = build_items(keys, SCENES, seed=0)
    capped = build_items(keys, SCENES, seed=0, items_per_type=20)
    counts = items_per_type(capped)
    assert set(counts) == set(CHANGE_TYPES) and all(n == 20 for n in counts.values())
    for change in CHANGE_TYPES:  # the first 20 of each type, the same negatives as without a cap
        assert [it for it in capped if it.change == change] == [it for it in full if it.change == change][:20]
    assert sum(items_per_type(full).values()) == len(full)


def test_masked_word_finds_one_changed_word_in_every_synthetic_negative():
    # masked-word scoring needs exactly one differing word between truth and negative
    from mamo.evaluation.masked_word import _changed_word

    items = build_items([f"k{i}" for i in range(len(SCENES))], SCENES, seed=0)
    assert all(_changed_word(it.true_caption, it.negative_caption) is not None for it in items)
