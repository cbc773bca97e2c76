"""Synthetic task files: readable by the public-format readers, labels true of the scenes."""
import json
from collections import Counter

from ingest.synthetic import relation_holds
from mamo.downstream.images import ImageStore
from mamo.downstream.readers import read_karpathy, read_nlvr2, read_refcoco, read_vqa
from mamo.downstream.synthetic_tasks import iter_scenes, nlvr2_statement, vqa_questions


def _scenes(version):
    return {s["key"]: s for s in iter_scenes(version)}


def test_files_round_trip_through_readers(synth_version, synth_tasks):
    image_map = json.loads((synth_tasks / "image_map.json").read_text())
    store = ImageStore.from_shards(synth_version, image_map)
    kp = read_karpathy(synth_tasks / "karpathy" / "dataset_synthetic.json")
    assert len(kp) == 160 and all(im.filename in store for im in kp)
    assert Counter(im.split for im in kp).keys() == {"train", "val", "test"}
    scenes = _scenes(synth_version)
    for im in kp:  # the caption is the scene's caption
        assert im.captions == [scenes[image_map[im.filename]]["caption"]]
    ids = {im.image_id for im in kp}
    for split in ("train", "val", "test"):
        qs = read_vqa(synth_tasks / "vqa" / f"v2_OpenEnded_mscoco_{split}_questions.json",
                      synth_tasks / "vqa" / f"v2_mscoco_{split}_annotations.json", image_ids=ids)
        assert qs and all(len(q.answers) == 10 and q.image_file in store for q in qs)
    nl = read_nlvr2(synth_tasks / "nlvr2" / "dev.json", image_files=store.names())
    assert nl and abs(sum(e.label for e in nl) / len(nl) - 0.5) < 0.15  # balanced labels
    refs = read_refcoco(synth_tasks / "refcoco+" / "refs.json", synth_tasks / "refcoco+" / "instances.json")
    assert refs
    for r in refs:  # the referred box is the described object's box, in pixels
        scene = scenes[image_map[r.image_file]]["scene"]
        desc = r.sentences[0].removeprefix("the ")
        objs = [o for o in scene["objects"] if f"{o['size']} {o['color']} {o['shape']}" == desc]
        assert len(objs) == 1
        x0, y0, x1, y1 = objs[0]["box"]
        assert abs(r.box[0] - x0 * r.width) < 0.02 and abs(r.box[2] - (x1 - x0) * r.width) < 0.02
        assert len(r.proposals) >= 2
    img = store.tensor([kp[0].filename], 64)
    assert img.shape == (1, 3, 64, 64)


def test_vqa_answers_are_true_of_the_scene():
    import random

    rng = random.Random(0)
    scene = {"objects": [
        {"shape": "circle", "color": "red", "size": "small", "box": [0.0, 0.0, 0.2, 0.2]},
        {"shape": "square", "color": "blue", "size": "large", "box": [0.6, 0.6, 0.9, 0.9]}],
        "spec": {"kind": "relation", "subject": 0, "relation": "left of", "object": 1}}
    for _ in range(20):
        for q, a, atype, _ in vqa_questions(scene, rng):
            if q == "what color is the circle?":
                assert a == "red"
            elif q == "what shape is the blue object?":
                assert a == "square"
            elif q.startswith("how many"):
                shape = q.split()[2]
                expect = {"circles": 1, "squares": 1}.get(shape, 0)
                assert a == str(expect) and atype == "number"
            elif q.startswith("is the small red circle "):
                rel = q[len("is the small red circle "):].split(" the ")[0]
                assert a == ("yes" if relation_holds([0, 0, .2, .2], [.6, .6, .9, .9], rel) else "no")


def test_nlvr2_statements_are_true_of_the_pair():
    import random

    rng = random.Random(1)
    left = {"objects": [{"shape": "circle", "color": "red", "size": "small", "box": [0, 0, .2, .2]}]}
    right = {"objects": [{"shape": "cross", "color": "red", "size": "small", "box": [0, 0, .2, .2]},
                         {"shape": "cross", "color": "red", "size": "small", "box": [.5, .5, .7, .7]}]}
    seen = set()
    for _ in range(200):
        s, label = nlvr2_statement(left, right, rng)
        seen.add(label)
        if s == "the left image contains more objects than the right image.":
            assert label is False
        if s == "there are 2 crosses in total.":
            assert label is True
        if s == "exactly one image contains a red object.":
            assert label is False
        if s == "both images contain a red circle.":
            assert label is False
    assert seen == {True, False}
