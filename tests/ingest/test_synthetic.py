"""The embedded synthetic data: schema, determinism, truth of captions, version layout."""
import io
import json

import numpy as np
import pytest
from PIL import Image

from ingest import synthetic as syn
from ingest.manifest import load_manifest
from ingest.shards import read_shard, write_index
from ingest.synthetic_version import write_synthetic_version


def test_scene_schema_and_caption_truth():
    kinds = set()
    for i in range(300):
        scene = syn.generate_scene(3, i)
        assert scene["seed"] == 3 and scene["index"] == i
        spec = scene["spec"]
        kinds.add(spec["kind"])
        for o in scene["objects"]:
            assert o["shape"] in syn.SHAPES and o["color"] in syn.COLORS and o["size"] in syn.SIZES
            x0, y0, x1, y1 = o["box"]
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        # objects never overlap
        objs = scene["objects"]
        for a in range(len(objs)):
            for b in range(a + 1, len(objs)):
                assert syn.grid_iou(objs[a]["box"], objs[b]["box"]) == 0
        cap = syn.render_caption(scene)
        words = set(cap.split())
        assert words <= set(syn.caption_vocabulary())
        if spec["kind"] == "count":
            assert 2 <= spec["count"] <= 4 and len(objs) == spec["count"]
            assert cap.split()[0] == syn.COUNT_WORDS[spec["count"]]
            assert all({k: o[k] for k in ("shape", "color", "size")} ==
                       {k: objs[0][k] for k in ("shape", "color", "size")} for o in objs)
        elif spec["kind"] == "relation":
            assert spec["relation"] in syn.RELATIONS
            assert syn.relation_holds(objs[spec["subject"]]["box"], objs[spec["object"]]["box"],
                                      spec["relation"])
            opposite = {"left of": "right of", "right of": "left of", "above": "below",
                        "below": "above"}[spec["relation"]]
            assert not syn.relation_holds(objs[spec["subject"]]["box"],
                                          objs[spec["object"]]["box"], opposite)
        else:
            assert len(objs) == 1
    assert kinds == set(syn.KINDS)


def test_changing_a_field_changes_the_caption():
    scene = next(s for s in (syn.generate_scene(0, i) for i in range(50))
                 if s["spec"]["kind"] == "relation")
    neg = json.loads(json.dumps(scene))
    neg["spec"]["relation"] = "right of" if scene["spec"]["relation"] != "right of" else "left of"
    assert syn.render_caption(neg) != syn.render_caption(scene)
    neg2 = json.loads(json.dumps(scene))
    neg2["objects"][0]["color"] = next(c for c in syn.COLORS if c != scene["objects"][0]["color"])
    assert syn.render_caption(neg2) != syn.render_caption(scene)


def test_deterministic_and_independent_of_n():
    a = syn.make_sample(5, 17, 64)
    b = list(syn.generate_samples(syn.SyntheticConfig(n=20, seed=5, image_size=64)))[17]
    assert a.jpg == b.jpg and a.caption == b.caption and a.scene == b.scene
    assert syn.make_sample(6, 17, 64).jpg != a.jpg


def test_object_colour_is_visible_where_the_box_says():
    s = syn.make_sample(1, 2, 96, texture=0.0)
    img = np.asarray(Image.open(io.BytesIO(s.jpg)).convert("RGB")).astype(int)
    for o in s.scene["objects"]:
        x0, y0, x1, y1 = (int(round(v * 96)) for v in o["box"])
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2 + (2 if o["shape"] == "triangle" else 0)
        assert np.abs(img[cy, cx] - np.array(syn.RGB[o["color"]])).max() < 40


def test_version_layout_and_index_matches_dali(tmp_path):
    cfg = syn.SyntheticConfig(n=25, seed=0, image_size=64)
    m = write_synthetic_version(tmp_path, "synthetic", "v1", cfg, samples_per_shard=10,
                                progress=False)
    vdir = tmp_path / "synthetic" / "v1"
    assert load_manifest(vdir) == m
    assert m["counts"] == {"input": 25, "written": 25, "failed": 0, "filtered": 0, "duplicate": 0}
    assert [s["samples"] for s in m["shards"]] == [10, 10, 5]
    assert (vdir / "failures.parquet").is_file()
    samples = read_shard(vdir / m["shards"][2]["tar"])
    s0 = samples[0]
    assert s0["txt"] == syn.render_caption(s0["json"]["synthetic"]) == s0["json"]["caption"]
    img = Image.open(io.BytesIO(s0["jpg"]))
    assert img.mode == "RGB" and img.size == (64, 64)
    for k in ("key", "caption", "width", "height", "original_width", "original_height", "sha256",
              "source_path"):
        assert k in s0["json"]
    # our index writer gives byte-identical output to DALI's wds2idx
    from wds2idx import IndexCreator

    for sh in m["shards"]:
        ref = tmp_path / "ref.idx"
        with IndexCreator(str(vdir / sh["tar"]), str(ref), verbose=False) as ic:
            ic.create_index()
        assert ref.read_text() == (vdir / sh["index"]).read_text()
    # a complete version is never rewritten
    from ingest.version import VersionExistsError

    with pytest.raises(VersionExistsError):
        write_synthetic_version(tmp_path, "synthetic", "v1", cfg, progress=False)
    assert write_index(vdir / m["shards"][0]["tar"], tmp_path / "again.idx") == 10
