"""Reading URL tables (parquet, csv, tsv, jsonl; a file or a folder of files) into rows.

Every physical input row becomes one ``InputRow`` with its position, even when it cannot be
parsed (then ``problem`` says why), so that accounting covers every row. Text is read with
``errors="surrogateescape"`` so invalid UTF-8 in one caption fails that row, not the file.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = ("parquet", "csv", "tsv", "jsonl")


@dataclass
class InputRow:
    row: int
    url: Any
    caption: Any
    extras: dict[str, Any] = field(default_factory=dict)
    problem: str = ""  # "malformed_row" when the line could not be parsed
    detail: str = ""


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("json", "ndjson"):
        suffix = "jsonl"
    if suffix not in FORMATS:
        raise ValueError(f"cannot tell the format of {path} (suffix {path.suffix!r}); set "
                         f"source.input_format to one of {FORMATS}")
    return suffix


def input_files(path: str | Path, input_format: str = "auto") -> list[tuple[Path, str]]:
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
        out = []
        for f in files:
            try:
                fmt = detect_format(f) if input_format == "auto" else input_format
            except ValueError:
                continue
            if input_format == "auto" or f.suffix.lower().lstrip(".") in (fmt, "json", "ndjson"):
                out.append((f, fmt))
        if not out:
            raise FileNotFoundError(f"no URL table files in {p}")
        return out
    if not p.is_file():
        raise FileNotFoundError(f"URL table not found: {p}")
    return [(p, detect_format(p) if input_format == "auto" else input_format)]


def _rows_parquet(path: Path, url_col: str, caption_col: str, extra_cols: list[str]):
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = set(table.column_names)
    for c in [url_col, caption_col, *extra_cols]:
        if c not in names:
            raise KeyError(f"{path}: column {c!r} not found (columns: {sorted(names)})")
    cols = {c: table.column(c).to_pylist() for c in [url_col, caption_col, *extra_cols]}
    for i in range(table.num_rows):
        yield cols[url_col][i], cols[caption_col][i], {c: cols[c][i] for c in extra_cols}, ""


def _rows_delimited(path: Path, delimiter: str, url_col: str, caption_col: str,
                    extra_cols: list[str]):
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    pos = {name: i for i, name in enumerate(header)}
    for c in [url_col, caption_col, *extra_cols]:
        if c not in pos:
            raise KeyError(f"{path}: column {c!r} not found (header: {header})")
    for rec in reader:
        if not rec:
            continue  # blank line: not a row
        if len(rec) != len(header):
            yield None, None, {}, f"expected {len(header)} fields, got {len(rec)}"
            continue
        yield (rec[pos[url_col]], rec[pos[caption_col]], {c: rec[pos[c]] for c in extra_cols}, "")


def _rows_jsonl(path: Path, url_col: str, caption_col: str, extra_cols: list[str]):
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield None, None, {}, f"invalid JSON: {e}"
            continue
        if not isinstance(obj, dict):
            yield None, None, {}, "line is not a JSON object"
            continue
        yield obj.get(url_col), obj.get(caption_col), {c: obj.get(c) for c in extra_cols}, ""


def read_url_table(path: str | Path, input_format: str = "auto", url_col: str = "url",
                   caption_col: str = "caption", extra_cols: list[str] | None = None) -> list[InputRow]:
    """All rows of a table (or a folder of tables, in name order), numbered from 0."""
    extra_cols = list(extra_cols or [])
    rows: list[InputRow] = []
    for f, fmt in input_files(path, input_format):
        if fmt == "parquet":
            it = _rows_parquet(f, url_col, caption_col, extra_cols)
        elif fmt in ("csv", "tsv"):
            it = _rows_delimited(f, "," if fmt == "csv" else "\t", url_col, caption_col, extra_cols)
        else:
            it = _rows_jsonl(f, url_col, caption_col, extra_cols)
        for url, cap, extras, problem in it:
            rows.append(InputRow(len(rows), url, cap, extras,
                                 "malformed_row" if problem else "", problem))
    return rows
