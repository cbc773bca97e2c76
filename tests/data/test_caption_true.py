"""Caption-true augmentation: crops that keep every object in view, flips that swap the
caption's left and right (and the scene's boxes), concept labels that follow the swap."""
import numpy as np
import pytest

from ingest.synthetic import SyntheticConfig, generate_scene, relation_holds, render_caption
from ingest.synthetic_version import write_synthetic_version
from mamo.data.caption_true import (caption_true_crop, flip_caption, flip_scene, shift_spans,
                                    visible_fraction)
from mamo.data.config import AugmentConfig, DataConfig
from mamo.data.samples import random_resized_crop

W = H = 96


def _scenes(n: int) -> list[dict]:
    return [generate_scene(7, i) for i in range(n)]


def test_the_crop_keeps_every_object_in_view_on_1000_draws():
    aug = AugmentConfig(crop_scale=(0.3, 1.0), min_visible=0.8)
    rng = np.random.default_rng(0)
    hidden_by_plain = 0
    for scene in _scenes(1000):
        crop = caption_true_crop(W, H, scene, aug, rng)
        assert all(visible_fraction(o["box"], crop, W, H) >= 0.8 for o in scene["objects"]), (scene, crop)
        plain = random_resized_crop(W, H, aug.crop_scale, aug.crop_ratio, rng)
        hidden_by_plain += any(visible_fraction(o["box"], plain, W, H) < 0.8 for o in scene["objects"])
    assert hidden_by_plain > 100  # what the check guards against does happen with a plain crop


def test_visible_fraction_on_hand_made_boxes():
    box = [0.0, 0.0, 0.5, 0.5]  # the top-left quarter of a 96 px image: 48 x 48 px
    assert visible_fraction(box, (0, 0, 96, 96), W, H) == pytest.approx(1.0)
    assert visible_fraction(box, (24, 0, 72, 96), W, H) == pytest.approx(0.5)
    assert visible_fraction(box, (48, 48, 48, 48), W, H) == pytest.approx(0.0)


def test_the_flip_swaps_left_and_right_in_caption_and_boxes():
    seen = 0
    for scene in _scenes(300):
        flipped = flip_scene(scene)
        caption, _ = flip_caption(render_caption(scene))
        assert caption == render_caption(flipped)
        spec = flipped["spec"]
        if spec["kind"] == "relation":
            subj, obj = flipped["objects"][spec["subject"]], flipped["objects"][spec["object"]]
            assert relation_holds(subj["box"], obj["box"], spec["relation"])
            seen += spec["relation"] in ("left of", "right of")
    assert seen > 20
    assert flip_caption("a red circle to the left of a blue square")[0] == \
        "a red circle to the right of a blue square"
    assert flip_caption("a leftover rightist")[0] == "a leftover rightist"  # whole words only


def test_concept_spans_follow_the_swapped_word_and_take_its_concept():
    caption = "a red circle to the left of a blue square"
    words = ["red", "circle", "left", "blue", "square"]
    ids = {w: i for i, w in enumerate([*words, "right"])}
    spans = [[caption.index(w), caption.index(w) + len(w), ids[w]] for w in words]
    new, edits = flip_caption(caption)
    moved = shift_spans(spans, edits, ids)
    assert [(new[s:e], c) for s, e, c in moved] == [("red", 0), ("circle", 1), ("right", ids["right"]),
                                                    ("blue", 3), ("square", 4)]
    # a vocabulary without "right": the swapped word gets no label rather than the wrong one
    no_right = {w: i for i, w in enumerate(words)}
    assert [new[s:e] for s, e, _ in shift_spans(spans, edits, no_right)] == ["red", "circle", "blue", "square"]
    # a longer span that holds the swapped word is dropped
    long_span = [[caption.index("left"), caption.index("left") + len("left of"), 9]]
    assert shift_spans(long_span, edits, ids) == []


@pytest.fixture(scope="module")
def relation_version(tmp_path_factory):
    from concepts.build import build_concepts

    root = tmp_path_factory.mktemp("caption_true")
    write_synthetic_version(root, "synthetic", "v1", SyntheticConfig(n=48, seed=2, kind_weights=(0, 0, 1)),
                            samples_per_shard=24, progress=False)
    vdir = root / "synthetic" / "v1"
    build_concepts(vdir)
    return vdir


def test_flipped_batches_carry_the_swapped_caption_and_its_concept_labels(relation_version):
    from concepts.store import ConceptStore
    from concepts.tokenizer import load_tokenizer
    from mamo.data.loader import build_loader

    def batches(flip: float) -> list[dict]:
        cfg = DataConfig(version_dir=relation_version, batch_size=8, image_size=32, backend="torch",
                         augment=AugmentConfig(hflip_prob=flip))
        return list(build_loader(cfg, "train"))

    plain, flipped = batches(0.0), batches(1.0)
    tok = load_tokenizer()
    concept_of = ConceptStore(relation_version).concept_to_id
    assert {"left", "right"} <= set(concept_of)  # spaCy tags them NOUN: they are concepts
    swapped = 0
    for a, b in zip(plain, flipped):
        assert a["keys"] == b["keys"]
        for i, (ca, cb) in enumerate(zip(a["captions"], b["captions"])):
            assert cb == flip_caption(ca)[0]
            swapped += ca != cb
            # every word keeps its concept label, whatever the swap did to offsets, and a
            # swapped side word carries the concept of the word it became
            def labelled(batch: dict) -> list[tuple[str, int]]:
                ids, labels = batch["input_ids"][i].tolist(), batch["concept_labels"][i].tolist()
                return [(tok.id_to_token(t), c) for t, c in zip(ids, labels) if c >= 0]
            side = {"left": "right", "right": "left"}
            expected = [(side.get(w, w), concept_of.get(side[w], c) if w in side else c)
                        for w, c in labelled(a)] if ca != cb else labelled(a)
            assert labelled(b) == expected
            assert labelled(a), "the vocabulary labels some words"
    assert swapped > 5
