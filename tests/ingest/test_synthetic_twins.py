"""Relation twins in the synthetic generator: pairs (2k, 2k+1) with the same objects and one
relation, count or size changed, both captions true; a pure function of (seed, index)."""
import hashlib
import json

import numpy as np
import pytest

from ingest import synthetic as syn
from ingest.manifest import load_manifest
from ingest.shards import read_shard
from ingest.synthetic_version import write_synthetic_version
from mamo.core.config import ConfigError

ATTRS = ("shape", "color", "size")
# sha256 of the scenes of seeds 0 and 7, indices 0..299, as generated before twins existed
SCENES_BEFORE_TWINS = "339af3a90db3a3ea5062e6322944679cabdf56ea930b8d75ac1a0efde8370aac"


def _pairs(seed, n_pairs, twins=1.0, kind_weights=(1.0, 1.0, 1.0)):
    return [(syn.generate_scene(seed, 2 * k, kind_weights, twins),
             syn.generate_scene(seed, 2 * k + 1, kind_weights, twins)) for k in range(n_pairs)]


def _attrs(o):
    return tuple(o[k] for k in ATTRS)


def _cell(box):
    return int(box[0] * syn.GRID), int(box[1] * syn.GRID)


def test_twins_off_gives_the_scenes_of_before():
    h = hashlib.sha256()
    for seed in (0, 7):
        for i in range(300):
            h.update(json.dumps(syn.generate_scene(seed, i, twins=0.0), sort_keys=True).encode())
    assert h.hexdigest() == SCENES_BEFORE_TWINS


def test_pairs_have_the_same_objects_and_one_change_both_captions_true():
    changes = set()
    for a, b in _pairs(3, 200):
        sa, sb = a["spec"], b["spec"]
        assert sa["twin_of"] == b["index"] == a["index"] + 1 and sb["twin_of"] == a["index"]
        assert sa["twin_change"] == sb["twin_change"] and sa["kind"] == sb["kind"]
        change = sa["twin_change"]
        changes.add(change)
        wa, wb = syn.render_caption(a).split(), syn.render_caption(b).split()
        # the captions differ in exactly one word
        assert len(wa) == len(wb) and sum(x != y for x, y in zip(wa, wb)) == 1
        objs_b = b["objects"]
        for i in range(len(objs_b)):  # never overlapping, inside the image
            x0, y0, x1, y1 = objs_b[i]["box"]
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
            for j in range(i + 1, len(objs_b)):
                assert syn.grid_iou(objs_b[i]["box"], objs_b[j]["box"]) == 0
        if change in ("left_right", "above_below"):
            assert [_attrs(o) for o in a["objects"]] == [_attrs(o) for o in objs_b]
            assert sb["relation"] == syn.OPPOSITE[sa["relation"]]
            assert change == ("left_right" if sa["relation"] in ("left of", "right of")
                              else "above_below")
            for s in (a, b):
                subj, obj = s["objects"][s["spec"]["subject"]], s["objects"][s["spec"]["object"]]
                assert syn.relation_holds(subj["box"], obj["box"], s["spec"]["relation"])
                assert not syn.relation_holds(subj["box"], obj["box"],
                                              syn.OPPOSITE[s["spec"]["relation"]])
            # the objects exchanged their cells
            assert _cell(objs_b[0]["box"]) == _cell(a["objects"][1]["box"])
            assert _cell(objs_b[1]["box"]) == _cell(a["objects"][0]["box"])
        elif change == "count":
            assert sb["count"] != sa["count"] and 2 <= sb["count"] <= 4
            assert len(objs_b) == sb["count"]
            assert {_attrs(o) for o in objs_b} == {_attrs(a["objects"][0])}
            boxes_a = {tuple(o["box"]) for o in a["objects"]}
            boxes_b = {tuple(o["box"]) for o in objs_b}
            # copies are only added or removed, the others stay where they were
            assert boxes_a <= boxes_b or boxes_b <= boxes_a
        else:
            assert change == "size" and sa["kind"] == "single"
            oa, ob = a["objects"][0], objs_b[0]
            assert (oa["shape"], oa["color"]) == (ob["shape"], ob["color"])
            assert oa["size"] != ob["size"] and _cell(oa["box"]) == _cell(ob["box"])
            side = ob["box"][2] - ob["box"][0]
            assert side == pytest.approx(syn.SIZE_FRACTION[ob["size"]], abs=2e-4)
    assert changes == set(syn.TWIN_CHANGES)


def test_first_members_and_untwinned_pairs_are_the_scenes_without_twins():
    twinned = 0
    for i in range(400):
        with_twins = syn.generate_scene(5, i, twins=0.4)
        plain = syn.generate_scene(5, i)
        if "twin_of" not in with_twins["spec"]:
            assert with_twins == plain
        else:
            twinned += 1
            if i % 2 == 0:
                spec = {k: v for k, v in with_twins["spec"].items()
                        if k not in ("twin_of", "twin_change")}
                assert {**with_twins, "spec": spec} == plain
    assert 0.25 * 400 < twinned < 0.55 * 400  # about 40% of pairs, two samples each


def test_twins_are_a_pure_function_of_seed_and_index():
    cfg = syn.SyntheticConfig(n=12, seed=9, image_size=32, twins=1.0, kind_weights=(0, 0, 1))
    listed = list(syn.generate_samples(cfg))
    for i in (11, 4, 7):  # out of order, alone
        alone = syn.make_sample(9, i, 32, (0, 0, 1), twins=1.0)
        assert alone.scene == listed[i].scene and alone.jpg == listed[i].jpg
    assert syn.make_sample(9, 7, 32, (0, 0, 1), twins=1.0).scene != syn.make_sample(
        10, 7, 32, (0, 0, 1), twins=1.0).scene


def test_twins_share_the_background():
    a, b = _pairs(2, 1, kind_weights=(0, 0, 1))[0]
    ia = np.asarray(syn.render_image(a, 64)).astype(int)
    ib = np.asarray(syn.render_image(b, 64)).astype(int)
    free = np.ones((64, 64), dtype=bool)
    for o in a["objects"] + b["objects"]:  # away from every object of either image
        x0, y0, x1, y1 = (int(round(v * 64)) for v in o["box"])
        free[max(0, y0 - 3):y1 + 3, max(0, x0 - 3):x1 + 3] = False
    assert free.sum() > 500
    assert np.abs(ia[free] - ib[free]).max() <= 2
    assert np.abs(ia[~free] - ib[~free]).max() > 50  # the objects did move


def test_twins_config_range_names_the_key():
    with pytest.raises(ConfigError, match="twins"):
        from mamo.core.config import from_dict

        from_dict(syn.SyntheticConfig, {"twins": 1.5})


def test_version_records_twins_in_params_and_scenes(tmp_path):
    m = write_synthetic_version(tmp_path, "syn", "tw", syn.SyntheticConfig(
        n=6, seed=1, image_size=16, twins=1.0), samples_per_shard=6, progress=False)
    assert m["params"]["twins"] == 1.0
    samples = read_shard(tmp_path / "syn" / "tw" / m["shards"][0]["tar"])
    specs = [s["json"]["synthetic"]["spec"] for s in samples]
    assert [sp["twin_of"] for sp in specs] == [1, 0, 3, 2, 5, 4]
    assert all(s["txt"] == syn.render_caption(s["json"]["synthetic"]) for s in samples)
    plain = write_synthetic_version(tmp_path, "syn", "plain", syn.SyntheticConfig(
        n=6, seed=1, image_size=16), samples_per_shard=6, progress=False)
    assert "twins" not in plain["params"] and load_manifest(tmp_path / "syn" / "plain") == plain


def test_cli_twins_and_kind_weights(tmp_path, capsys):
    from ingest.__main__ import main

    assert main(["synthetic", "--out", str(tmp_path), "--n", "4", "--image-size", "16",
                 "--twins", "1", "--kind-weights", "0,0,1"]) == 0
    out = json.loads(capsys.readouterr().out)
    m = load_manifest(out["version_dir"])
    assert m["params"]["twins"] == 1.0 and m["params"]["kind_weights"] == [0.0, 0.0, 1.0]
    samples = read_shard(tmp_path / "synthetic" / "v1" / m["shards"][0]["tar"])
    specs = [s["json"]["synthetic"]["spec"] for s in samples]
    assert {sp["kind"] for sp in specs} == {"relation"}
    assert [sp["twin_of"] for sp in specs] == [1, 0, 3, 2]


@pytest.mark.parametrize("argv, key", [(["--kind-weights", "1,2"], "kind_weights"),
                                       (["--kind-weights", "0,0,0"], "kind_weights"),
                                       (["--twins", "2"], "twins")])
def test_cli_bad_scene_options_name_the_key(tmp_path, capsys, argv, key):
    from ingest.__main__ import main

    assert main(["synthetic", "--out", str(tmp_path), "--n", "2", *argv]) == 2
    err = capsys.readouterr().err
    assert key in err and len(err.strip().splitlines()) == 1


def test_cli_kind_weights_must_be_numbers(tmp_path, capsys):
    from ingest.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["synthetic", "--out", str(tmp_path), "--kind-weights", "a,b,c"])
    assert e.value.code == 2 and "comma-separated numbers" in capsys.readouterr().err


def test_twin_pairs_finds_the_pairs_present():
    scenes = [syn.generate_scene(4, i, twins=0.5) for i in range(41)]  # the last one's partner is absent
    shuffled = scenes[::-1]
    pairs = syn.twin_pairs(shuffled)
    want = {(i, i + 1) for i in range(0, 40, 2) if "twin_of" in scenes[i]["spec"]}
    assert want and {(shuffled[i]["index"], shuffled[j]["index"]) for i, j, _ in pairs} == want
    assert all(c == shuffled[i]["spec"]["twin_change"] for i, _, c in pairs)
    assert syn.twin_pairs([syn.generate_scene(4, i) for i in range(10)]) == []
