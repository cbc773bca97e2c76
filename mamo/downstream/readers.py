"""Readers for the public downstream formats, validated record by record.

Every malformed record raises ``FormatError`` whose message names the file and the record
(index and id), so a broken export is found at load time rather than mid fine-tuning.

Formats (as published upstream):
- Karpathy split JSON (COCO / Flickr30K): ``{"images": [{"filename", "split", "imgid",
  "sentences": [{"raw", ...}], "filepath"?, "cocoid"?}], "dataset"}``.
- VQA v2: questions ``{"questions": [{"question_id", "image_id", "question"}],
  "data_subtype"}``; annotations ``{"annotations": [{"question_id", "image_id",
  "answers": [{"answer", ...}] (10), "multiple_choice_answer", "answer_type",
  "question_type"}]}``. Image files follow COCO naming ``COCO_<subtype>_<id:012d>.jpg``.
- NLVR2 JSON lines: ``{"identifier": "dev-850-0-0", "sentence", "label": "True"|"False"}``;
  the images are ``dev-850-0-img0.png`` / ``-img1.png`` (derived from the identifier).
- RefCOCO+: ``refs`` (upstream a pickle; here its JSON export with the same fields:
  ``ref_id, image_id, ann_id, split, sentences[{sent}]``) and ``instances.json``
  (``images[{id, file_name, width, height}]``, ``annotations[{id, image_id, bbox [x,y,w,h]}]``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


class FormatError(ValueError):
    """A downstream file that does not follow its format; names the file and record."""


def _load_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"downstream file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}: not valid JSON ({e})") from e


def _need(rec: Any, name: str, types: type | tuple[type, ...], where: str) -> Any:
    """Field ``name`` of dict ``rec`` with the given type(s), or a FormatError naming ``where``."""
    if not isinstance(rec, dict):
        raise FormatError(f"{where}: record must be an object, got {type(rec).__name__}")
    if name not in rec:
        raise FormatError(f"{where}: missing field {name!r}")
    value = rec[name]
    # bool is an int subclass; an id of True is a broken record, not id 1
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise FormatError(f"{where}: field {name!r} has the wrong type ({value!r})")
    if not isinstance(value, types):
        raise FormatError(f"{where}: field {name!r} has the wrong type ({value!r})")
    return value


# ---------------------------------------------------------------- Karpathy split JSON
@dataclass
class KarpathyImage:
    image_id: int
    filename: str          # the file name the images are stored under
    filepath: str          # sub-folder upstream (COCO: train2014/val2014), "" if none
    split: str             # train | restval | val | test
    captions: list[str]


def read_karpathy(path: str | Path, split: str | Iterable[str] | None = None) -> list[KarpathyImage]:
    """Images (with their captions) of a Karpathy split file, optionally of some splits only.

    ``split="train"`` also takes ``restval`` (the Karpathy convention for COCO training).
    """
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise FormatError(f"{path}: a Karpathy split file needs a top-level 'images' list")
    wanted: set[str] | None
    if split is None:
        wanted = None
    else:
        wanted = {split} if isinstance(split, str) else set(split)
        if "train" in wanted:
            wanted.add("restval")
    out: list[KarpathyImage] = []
    seen: dict[str, int] = {}
    for i, rec in enumerate(data["images"]):
        where = f"{path}: images[{i}]"
        filename = _need(rec, "filename", str, where)
        where = f"{path}: images[{i}] (filename {filename!r})"
        sp = _need(rec, "split", str, where)
        image_id = rec.get("imgid", rec.get("cocoid", i))
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            raise FormatError(f"{where}: field 'imgid' must be an integer, got {image_id!r}")
        sentences = _need(rec, "sentences", list, where)
        captions = []
        for j, s in enumerate(sentences):
            raw = _need(s, "raw", str, f"{where} sentences[{j}]")
            if not raw.strip():
                raise FormatError(f"{where} sentences[{j}]: empty caption")
            captions.append(raw.strip())
        if not captions:
            raise FormatError(f"{where}: no sentences")
        if filename in seen:
            raise FormatError(f"{where}: duplicate filename (also images[{seen[filename]}])")
        seen[filename] = i
        if wanted is None or sp in wanted:
            out.append(KarpathyImage(image_id, filename, str(rec.get("filepath", "")), sp, captions))
    return out


# ---------------------------------------------------------------- VQA v2
@dataclass
class VQAQuestion:
    question_id: int
    image_id: int
    question: str
    image_file: str                     # COCO naming: COCO_<subtype>_<image_id:012d>.jpg
    answers: list[str] = field(default_factory=list)   # the 10 human answers ([] for test)
    multiple_choice_answer: str | None = None
    answer_type: str | None = None
    question_type: str | None = None


def coco_image_file(data_subtype: str, image_id: int) -> str:
    """The COCO file name VQA uses for an image id (e.g. COCO_val2014_000000000042.jpg)."""
    return f"COCO_{data_subtype}_{image_id:012d}.jpg"


def read_vqa(
    questions_path: str | Path,
    annotations_path: str | Path | None = None,
    image_ids: Iterable[int] | None = None,
) -> list[VQAQuestion]:
    """Questions joined with their annotations (if given) by ``question_id``.

    ``image_ids``: the images that exist; a question about another image is an error naming it.
    Every question must have exactly one annotation (and vice versa) with the same image id.
    """
    qdata = _load_json(questions_path)
    if not isinstance(qdata, dict) or not isinstance(qdata.get("questions"), list):
        raise FormatError(f"{questions_path}: a VQA questions file needs a 'questions' list")
    subtype = qdata.get("data_subtype", "")
    if not isinstance(subtype, str) or not subtype:
        raise FormatError(f"{questions_path}: missing field 'data_subtype' (names the image files)")
    known = None if image_ids is None else set(image_ids)
    out: list[VQAQuestion] = []
    by_qid: dict[int, VQAQuestion] = {}
    for i, rec in enumerate(qdata["questions"]):
        where = f"{questions_path}: questions[{i}]"
        qid = _need(rec, "question_id", int, where)
        where = f"{questions_path}: questions[{i}] (question_id {qid})"
        image_id = _need(rec, "image_id", int, where)
        text = _need(rec, "question", str, where)
        if not text.strip():
            raise FormatError(f"{where}: empty question")
        if known is not None and image_id not in known:
            raise FormatError(f"{where}: image_id {image_id} does not exist")
        if qid in by_qid:
            raise FormatError(f"{where}: duplicate question_id")
        q = VQAQuestion(qid, image_id, text.strip(), coco_image_file(subtype, image_id))
        by_qid[qid] = q
        out.append(q)
    if annotations_path is None:
        return out
    adata = _load_json(annotations_path)
    if not isinstance(adata, dict) or not isinstance(adata.get("annotations"), list):
        raise FormatError(f"{annotations_path}: a VQA annotations file needs an 'annotations' list")
    annotated: set[int] = set()
    for i, rec in enumerate(adata["annotations"]):
        where = f"{annotations_path}: annotations[{i}]"
        qid = _need(rec, "question_id", int, where)
        where = f"{annotations_path}: annotations[{i}] (question_id {qid})"
        if qid not in by_qid:
            raise FormatError(f"{where}: no such question in {questions_path}")
        if qid in annotated:
            raise FormatError(f"{where}: duplicate annotation")
        q = by_qid[qid]
        image_id = _need(rec, "image_id", int, where)
        if image_id != q.image_id:
            raise FormatError(f"{where}: image_id {image_id} differs from the question's {q.image_id}")
        answers = _need(rec, "answers", list, where)
        if not answers:
            raise FormatError(f"{where}: empty 'answers'")
        q.answers = [_need(a, "answer", str, f"{where} answers[{j}]") for j, a in enumerate(answers)]
        q.multiple_choice_answer = rec.get("multiple_choice_answer")
        q.answer_type = rec.get("answer_type")
        q.question_type = rec.get("question_type")
        annotated.add(qid)
    missing = [q.question_id for q in out if q.question_id not in annotated]
    if missing:
        raise FormatError(f"{annotations_path}: no annotation for question_id {missing[0]}"
                          f" ({len(missing)} questions unannotated)")
    return out


# ---------------------------------------------------------------- NLVR2
@dataclass
class NLVR2Example:
    identifier: str
    sentence: str
    label: bool
    left_image: str        # "<split>-<set>-<pair>-img0.png"
    right_image: str


def nlvr2_image_files(identifier: str) -> tuple[str, str]:
    """NLVR2 convention: identifier ``dev-850-0-1`` -> ``dev-850-0-img0.png``, ``-img1.png``."""
    parts = identifier.split("-")
    if len(parts) != 4:
        raise FormatError(f"NLVR2 identifier {identifier!r} is not <split>-<set>-<pair>-<sentence>")
    stem = "-".join(parts[:3])
    return f"{stem}-img0.png", f"{stem}-img1.png"


def read_nlvr2(path: str | Path, image_files: Iterable[str] | None = None) -> list[NLVR2Example]:
    """Examples of an NLVR2 JSON-lines file; ``image_files``: names that exist (checked)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"downstream file not found: {path}")
    known = None if image_files is None else set(image_files)
    out: list[NLVR2Example] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise FormatError(f"{where}: not valid JSON ({e})") from e
            ident = _need(rec, "identifier", str, where)
            where = f"{path}:{lineno} (identifier {ident!r})"
            sentence = _need(rec, "sentence", str, where)
            label = _need(rec, "label", (str, bool), where)
            if isinstance(label, str):
                if label not in ("True", "False"):
                    raise FormatError(f"{where}: label must be 'True' or 'False', got {label!r}")
                label = label == "True"
            try:
                left, right = nlvr2_image_files(ident)
            except FormatError as e:
                raise FormatError(f"{where}: {e}") from None
            if known is not None:
                for name in (left, right):
                    if name not in known:
                        raise FormatError(f"{where}: image {name!r} does not exist")
            out.append(NLVR2Example(ident, sentence.strip(), label, left, right))
    return out


# ---------------------------------------------------------------- RefCOCO+
@dataclass
class RefExpression:
    ref_id: int
    image_id: int
    ann_id: int
    split: str
    sentences: list[str]
    box: list[float]             # the referred object's [x, y, w, h] in pixels
    image_file: str
    width: int
    height: int
    proposals: list[list[float]]  # every annotated box of the image, [x, y, w, h] (candidates)


def read_refcoco(
    refs_path: str | Path, instances_path: str | Path, split: str | Iterable[str] | None = None
) -> list[RefExpression]:
    """Referring expressions joined with their boxes and images (RefCOCO+ refs JSON export)."""
    if str(refs_path).endswith(".p"):
        raise FormatError(
            f"{refs_path}: the upstream refs(unc).p is a pickle; export it to JSON (a list of "
            "{ref_id, image_id, ann_id, split, sentences: [{sent}]}) and pass that file"
        )
    refs = _load_json(refs_path)
    inst = _load_json(instances_path)
    if not isinstance(refs, list):
        raise FormatError(f"{refs_path}: refs must be a JSON list of ref records")
    if not isinstance(inst, dict) or not isinstance(inst.get("images"), list) \
            or not isinstance(inst.get("annotations"), list):
        raise FormatError(f"{instances_path}: instances need 'images' and 'annotations' lists")
    images: dict[int, dict] = {}
    for i, im in enumerate(inst["images"]):
        where = f"{instances_path}: images[{i}]"
        iid = _need(im, "id", int, where)
        where = f"{instances_path}: images[{i}] (id {iid})"
        images[iid] = {"file_name": _need(im, "file_name", str, where),
                       "width": _need(im, "width", int, where),
                       "height": _need(im, "height", int, where)}
    anns: dict[int, dict] = {}
    boxes_of: dict[int, list[list[float]]] = {}
    for i, a in enumerate(inst["annotations"]):
        where = f"{instances_path}: annotations[{i}]"
        aid = _need(a, "id", int, where)
        where = f"{instances_path}: annotations[{i}] (id {aid})"
        iid = _need(a, "image_id", int, where)
        if iid not in images:
            raise FormatError(f"{where}: image_id {iid} does not exist")
        bbox = _need(a, "bbox", list, where)
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox) or bbox[2] <= 0 or bbox[3] <= 0:
            raise FormatError(f"{where}: bbox must be [x, y, w, h] with w, h > 0, got {bbox!r}")
        anns[aid] = {"image_id": iid, "bbox": [float(v) for v in bbox]}
        boxes_of.setdefault(iid, []).append([float(v) for v in bbox])
    wanted = None if split is None else ({split} if isinstance(split, str) else set(split))
    out: list[RefExpression] = []
    for i, r in enumerate(refs):
        where = f"{refs_path}: refs[{i}]"
        rid = _need(r, "ref_id", int, where)
        where = f"{refs_path}: refs[{i}] (ref_id {rid})"
        iid = _need(r, "image_id", int, where)
        aid = _need(r, "ann_id", int, where)
        sp = _need(r, "split", str, where)
        sents = _need(r, "sentences", list, where)
        texts = [_need(s, "sent", str, f"{where} sentences[{j}]").strip() for j, s in enumerate(sents)]
        if not texts or not all(texts):
            raise FormatError(f"{where}: needs at least one non-empty sentence")
        if iid not in images:
            raise FormatError(f"{where}: image_id {iid} does not exist in {instances_path}")
        if aid not in anns:
            raise FormatError(f"{where}: ann_id {aid} does not exist in {instances_path}")
        if anns[aid]["image_id"] != iid:
            raise FormatError(f"{where}: ann_id {aid} belongs to image {anns[aid]['image_id']}, not {iid}")
        if wanted is not None and sp not in wanted:
            continue
        im = images[iid]
        out.append(RefExpression(rid, iid, aid, sp, texts, anns[aid]["bbox"], im["file_name"],
                                 im["width"], im["height"], boxes_of[iid]))
    return out
