"""Read side of a concept vocabulary version (docs/ARCHITECTURE.md section 2).

    <version_dir>/concepts/<vocab_id>/vocab.tsv, meta.json, annotations/<shard_stem>.jsonl
    <version_dir>/concepts/LATEST
"""
from __future__ import annotations

import json
from pathlib import Path

CONCEPTS_DIR = "concepts"
LATEST = "LATEST"
VOCAB_FILE = "vocab.tsv"
META_FILE = "meta.json"
ANNOTATIONS_DIR = "annotations"
VOCAB_HEADER = ("id", "concept", "pos", "count")


class ConceptStoreError(FileNotFoundError):
    """A concept vocabulary or annotation file is missing or belongs to another vocab_id."""


def concepts_root(version_dir: str | Path) -> Path:
    return Path(version_dir) / CONCEPTS_DIR


def read_latest(version_dir: str | Path) -> str | None:
    """The vocab_id named by ``concepts/LATEST``, or None when no vocabulary was built."""
    path = concepts_root(version_dir) / LATEST
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8").strip()
    return text or None


def read_vocab_tsv(path: str | Path) -> list[tuple[int, str, str, int]]:
    """Rows ``(id, concept, pos, count)`` of a vocab.tsv, checking the header and dense ids."""
    rows: list[tuple[int, str, str, int]] = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if tuple(header) != VOCAB_HEADER:
            raise ConceptStoreError(f"{path}: header must be {VOCAB_HEADER}, got {header}")
        for lineno, line in enumerate(f, start=2):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                raise ConceptStoreError(f"{path}:{lineno}: expected 4 columns, got {parts}")
            cid, concept, pos, count = int(parts[0]), parts[1], parts[2], int(parts[3])
            if cid != len(rows):
                raise ConceptStoreError(f"{path}:{lineno}: ids must be 0..N-1 in order")
            rows.append((cid, concept, pos, count))
    return rows


class ConceptStore:
    """An opened concept vocabulary of one dataset version.

    ``vocab_id="latest"`` follows ``concepts/LATEST``. Concept ids are dense, 0..N-1, with
    no reserved ids; "no concept" is -100 in label tensors, never an id here.
    """

    def __init__(self, version_dir: str | Path, vocab_id: str = "latest"):
        self.version_dir = Path(version_dir)
        root = concepts_root(self.version_dir)
        if vocab_id == "latest":
            latest = read_latest(self.version_dir)
            if latest is None:
                raise ConceptStoreError(
                    f"no concept vocabulary under {root} (no {LATEST} file); build one with "
                    f"`python -m concepts build {self.version_dir}`")
            vocab_id = latest
        self.vocab_id: str = vocab_id
        self.dir = root / vocab_id
        vocab_path = self.dir / VOCAB_FILE
        if not vocab_path.is_file():
            known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
            raise ConceptStoreError(
                f"concept vocabulary {vocab_id!r} not found at {vocab_path} (known: {known})")
        self.meta: dict = json.loads((self.dir / META_FILE).read_text(encoding="utf-8"))
        if self.meta.get("vocab_id") != vocab_id:
            raise ConceptStoreError(
                f"{self.dir / META_FILE} names vocab_id {self.meta.get('vocab_id')!r}, "
                f"not {vocab_id!r}")
        rows = read_vocab_tsv(vocab_path)
        self.concepts: list[str] = [r[1] for r in rows]
        self.pos: list[str] = [r[2] for r in rows]
        self.counts: list[int] = [r[3] for r in rows]
        self.concept_to_id: dict[str, int] = {c: i for i, c in enumerate(self.concepts)}

    @property
    def num_concepts(self) -> int:
        return len(self.concepts)

    def annotation_path(self, shard_stem: str) -> Path:
        return self.dir / ANNOTATIONS_DIR / f"{shard_stem}.jsonl"

    def annotations(self, shard_stem: str) -> dict[str, list[list[int]]]:
        """``{sample key: [[char_start, char_end, concept_id], ...]}`` for one shard."""
        path = self.annotation_path(shard_stem)
        if not path.is_file():
            raise ConceptStoreError(
                f"no annotations for shard {shard_stem!r} in vocabulary {self.vocab_id!r} "
                f"({path}); run `python -m concepts annotate {self.version_dir}`")
        out: dict[str, list[list[int]]] = {}
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                rec = json.loads(line)
                if rec.get("vocab_id") != self.vocab_id:
                    raise ConceptStoreError(
                        f"{path}:{lineno}: annotation of vocab_id {rec.get('vocab_id')!r}, "
                        f"but this store opened {self.vocab_id!r}")
                out[rec["key"]] = [list(map(int, s)) for s in rec["spans"]]
        return out

    def __repr__(self) -> str:
        return f"ConceptStore({str(self.version_dir)!r}, vocab_id={self.vocab_id!r}, " \
               f"num_concepts={self.num_concepts})"
