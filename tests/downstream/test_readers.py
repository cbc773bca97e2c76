"""Readers on small hand-written files modelled on the public formats, good and broken."""
import json

import pytest

from mamo.downstream.readers import (
    FormatError, nlvr2_image_files, read_karpathy, read_nlvr2, read_refcoco, read_vqa,
)


def _w(path, obj):
    path.write_text(json.dumps(obj))
    return path


KARPATHY = {"dataset": "coco", "images": [
    {"filepath": "val2014", "sentids": [1, 2], "filename": "COCO_val2014_000000391895.jpg",
     "imgid": 0, "split": "test", "cocoid": 391895,
     "sentences": [{"tokens": ["a", "man"], "raw": "A man riding a bike.", "imgid": 0, "sentid": 1},
                   {"tokens": ["a"], "raw": "A person on a bicycle .", "imgid": 0, "sentid": 2}]},
    {"filepath": "train2014", "filename": "COCO_train2014_000000000009.jpg", "imgid": 1,
     "split": "restval", "sentences": [{"raw": "Food in a box.", "sentid": 3}]},
    {"filepath": "train2014", "filename": "COCO_train2014_000000000025.jpg", "imgid": 2,
     "split": "train", "sentences": [{"raw": "A giraffe.", "sentid": 4}]},
]}


def test_karpathy_reads_and_filters(tmp_path):
    p = _w(tmp_path / "dataset_coco.json", KARPATHY)
    all_images = read_karpathy(p)
    assert [im.image_id for im in all_images] == [0, 1, 2]
    assert all_images[0].captions == ["A man riding a bike.", "A person on a bicycle ."]
    assert all_images[0].filepath == "val2014"
    assert [im.image_id for im in read_karpathy(p, "train")] == [1, 2]  # restval joins train
    assert [im.image_id for im in read_karpathy(p, "test")] == [0]


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["images"][1].pop("filename"), "images[1]: missing field 'filename'"),
    (lambda d: d["images"][2].pop("split"), "COCO_train2014_000000000025.jpg"),
    (lambda d: d["images"][0]["sentences"][1].pop("raw"), "sentences[1]: missing field 'raw'"),
    (lambda d: d["images"][2].update(filename="COCO_train2014_000000000009.jpg"), "duplicate filename"),
    (lambda d: d["images"][2].update(sentences=[]), "no sentences"),
    (lambda d: d.pop("images"), "'images' list"),
])
def test_karpathy_malformed(tmp_path, mutate, needle):
    d = json.loads(json.dumps(KARPATHY))
    mutate(d)
    with pytest.raises(FormatError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        read_karpathy(_w(tmp_path / "k.json", d))


QUESTIONS = {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco",
             "data_subtype": "val2014", "license": {}, "questions": [
                 {"image_id": 42, "question": "What color is the bus?", "question_id": 420},
                 {"image_id": 42, "question": "How many dogs?", "question_id": 421},
                 {"image_id": 7, "question": "Is it raining?", "question_id": 70}]}


def _answers(*pairs):
    out = []
    for a, n in pairs:
        out += [{"answer": a, "answer_confidence": "yes", "answer_id": len(out) + i + 1} for i in range(n)]
    return out


ANNOTATIONS = {"annotations": [
    {"question_id": 420, "image_id": 42, "question_type": "what color is the", "answer_type": "other",
     "multiple_choice_answer": "red", "answers": _answers(("red", 8), ("orange", 2))},
    {"question_id": 421, "image_id": 42, "question_type": "how many", "answer_type": "number",
     "multiple_choice_answer": "2", "answers": _answers(("2", 9), ("two", 1))},
    {"question_id": 70, "image_id": 7, "question_type": "is it", "answer_type": "yes/no",
     "multiple_choice_answer": "no", "answers": _answers(("no", 10))}]}


def test_vqa_reads_and_joins(tmp_path):
    q = _w(tmp_path / "q.json", QUESTIONS)
    a = _w(tmp_path / "a.json", ANNOTATIONS)
    items = read_vqa(q, a, image_ids=[7, 42])
    assert [x.question_id for x in items] == [420, 421, 70]
    assert items[0].image_file == "COCO_val2014_000000000042.jpg"
    assert items[0].answers.count("red") == 8 and len(items[0].answers) == 10
    assert items[1].answer_type == "number"
    test_only = read_vqa(q)  # the test split has no annotations
    assert test_only[2].answers == []


def test_vqa_malformed(tmp_path):
    q = _w(tmp_path / "q.json", QUESTIONS)
    with pytest.raises(FormatError, match=r"question_id 420\): image_id 42 does not exist"):
        read_vqa(q, image_ids=[7])
    bad = json.loads(json.dumps(ANNOTATIONS))
    bad["annotations"][1]["image_id"] = 7
    with pytest.raises(FormatError, match=r"question_id 421\): image_id 7 differs"):
        read_vqa(q, _w(tmp_path / "a.json", bad))
    bad = json.loads(json.dumps(ANNOTATIONS))
    bad["annotations"].pop(2)
    with pytest.raises(FormatError, match="no annotation for question_id 70"):
        read_vqa(q, _w(tmp_path / "a.json", bad))
    bad = json.loads(json.dumps(ANNOTATIONS))
    bad["annotations"][0]["question_id"] = 999
    with pytest.raises(FormatError, match=r"question_id 999\): no such question"):
        read_vqa(q, _w(tmp_path / "a.json", bad))
    bad = json.loads(json.dumps(QUESTIONS))
    del bad["questions"][1]["question"]
    with pytest.raises(FormatError, match=r"questions\[1\] \(question_id 421\): missing field 'question'"):
        read_vqa(_w(tmp_path / "q2.json", bad))
    bad = json.loads(json.dumps(QUESTIONS))
    del bad["data_subtype"]
    with pytest.raises(FormatError, match="data_subtype"):
        read_vqa(_w(tmp_path / "q3.json", bad))


NLVR2_LINES = [
    {"validation": {}, "sentence": "The left image contains twice the number of dogs as the right image.",
     "left_url": "http://x/a.jpg", "writer": "103", "label": "True", "right_url": "http://x/b.jpg",
     "synset": "dog", "query": "dog", "identifier": "dev-850-0-0", "extra_validations": {}},
    {"sentence": "One image shows exactly two brown acorns.", "label": "False",
     "identifier": "dev-851-2-1"},
]


def _jsonl(path, lines):
    path.write_text("".join((json.dumps(x) if not isinstance(x, str) else x) + "\n" for x in lines))
    return path


def test_nlvr2_reads(tmp_path):
    p = _jsonl(tmp_path / "dev.json", NLVR2_LINES)
    ex = read_nlvr2(p)
    assert [e.label for e in ex] == [True, False]
    assert (ex[0].left_image, ex[0].right_image) == ("dev-850-0-img0.png", "dev-850-0-img1.png")
    assert nlvr2_image_files("test1-3-1-2") == ("test1-3-1-img0.png", "test1-3-1-img1.png")


@pytest.mark.parametrize("line, needle", [
    ({"sentence": "x", "label": "True"}, r"dev.json:2: missing field 'identifier'"),
    ({"identifier": "dev-1-0-0", "label": "True"}, r"identifier 'dev-1-0-0'\): missing field 'sentence'"),
    ({"identifier": "dev-1-0-0", "sentence": "x", "label": "yes"}, "label must be 'True' or 'False'"),
    ({"identifier": "dev-1-0", "sentence": "x", "label": "True"}, "is not <split>-<set>-<pair>-<sentence>"),
    ("{not json", r"dev.json:2: not valid JSON"),
])
def test_nlvr2_malformed(tmp_path, line, needle):
    p = _jsonl(tmp_path / "dev.json", [NLVR2_LINES[0], line])
    with pytest.raises(FormatError, match=needle):
        read_nlvr2(p)


def test_nlvr2_missing_image(tmp_path):
    p = _jsonl(tmp_path / "dev.json", NLVR2_LINES[:1])
    with pytest.raises(FormatError, match=r"image 'dev-850-0-img1.png' does not exist"):
        read_nlvr2(p, image_files=["dev-850-0-img0.png"])


INSTANCES = {"images": [{"id": 5, "file_name": "COCO_train2014_000000000005.jpg", "width": 640, "height": 480},
                        {"id": 6, "file_name": "COCO_train2014_000000000006.jpg", "width": 320, "height": 240}],
             "annotations": [{"id": 50, "image_id": 5, "bbox": [10, 20, 100, 50], "category_id": 1},
                             {"id": 51, "image_id": 5, "bbox": [300, 200, 40, 40.5], "category_id": 2},
                             {"id": 60, "image_id": 6, "bbox": [0, 0, 10, 10], "category_id": 1}],
             "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}]}
REFS = [{"ref_id": 1, "image_id": 5, "ann_id": 51, "split": "testA", "category_id": 2,
         "sentences": [{"sent": "brown dog", "tokens": ["brown", "dog"]}, {"sent": "dog lying down"}]},
        {"ref_id": 2, "image_id": 6, "ann_id": 60, "split": "train", "sentences": [{"sent": "man in red"}]}]


def test_refcoco_reads(tmp_path):
    r = _w(tmp_path / "refs.json", REFS)
    i = _w(tmp_path / "instances.json", INSTANCES)
    refs = read_refcoco(r, i)
    assert refs[0].box == [300.0, 200.0, 40.0, 40.5]
    assert refs[0].sentences == ["brown dog", "dog lying down"]
    assert refs[0].proposals == [[10.0, 20.0, 100.0, 50.0], [300.0, 200.0, 40.0, 40.5]]
    assert (refs[0].image_file, refs[0].width, refs[0].height) == ("COCO_train2014_000000000005.jpg", 640, 480)
    assert [x.ref_id for x in read_refcoco(r, i, split="train")] == [2]


def test_refcoco_malformed(tmp_path):
    i = _w(tmp_path / "instances.json", INSTANCES)
    bad = json.loads(json.dumps(REFS)); bad[1]["image_id"] = 99
    with pytest.raises(FormatError, match=r"ref_id 2\): image_id 99 does not exist"):
        read_refcoco(_w(tmp_path / "r.json", bad), i)
    bad = json.loads(json.dumps(REFS)); bad[0]["ann_id"] = 77
    with pytest.raises(FormatError, match=r"ref_id 1\): ann_id 77 does not exist"):
        read_refcoco(_w(tmp_path / "r.json", bad), i)
    bad = json.loads(json.dumps(REFS)); bad[0]["ann_id"] = 60
    with pytest.raises(FormatError, match=r"ann_id 60 belongs to image 6, not 5"):
        read_refcoco(_w(tmp_path / "r.json", bad), i)
    bad = json.loads(json.dumps(REFS)); del bad[1]["sentences"][0]["sent"]
    with pytest.raises(FormatError, match=r"refs\[1\] \(ref_id 2\) sentences\[0\]: missing field 'sent'"):
        read_refcoco(_w(tmp_path / "r.json", bad), i)
    badi = json.loads(json.dumps(INSTANCES)); badi["annotations"][0]["bbox"] = [1, 2, 0, 4]
    with pytest.raises(FormatError, match=r"annotations\[0\] \(id 50\): bbox"):
        read_refcoco(_w(tmp_path / "r.json", REFS), _w(tmp_path / "i2.json", badi))
    with pytest.raises(FormatError, match="is a pickle; export it to JSON"):
        read_refcoco(tmp_path / "refs(unc).p", i)
