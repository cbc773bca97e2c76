"""``verify_version(dir)``: is a dataset version intact?

Checks: the manifest validates and its counts add up; every shard's tar exists, has the
recorded size and sha256, reads to the end as a tar, holds exactly ``samples`` samples each
with ``.jpg``/``.txt``/``.json`` and a valid key; KEY.json agrees with KEY.txt and the JPEG's
sha256; the DALI index matches the tar; failures.parquet has one row per non-written row.
With ``deep=True`` every JPEG is decoded too.
"""
from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .manifest import ManifestError, load_manifest
from .shards import (KEY_RE, MEMBER_ORDER, Member, ShardReadError, group_samples, index_text,
                     iter_members, sha256_file)


@dataclass
class VerifyReport:
    version_dir: str
    problems: list[str] = field(default_factory=list)
    shards_checked: int = 0
    samples_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> dict[str, Any]:
        return {"version_dir": self.version_dir, "ok": self.ok, "problems": len(self.problems),
                "shards": self.shards_checked, "samples": self.samples_checked}


def _members(tar_path: Path, name: str, report: VerifyReport) -> Iterator[Member]:
    """The shard's members that may belong to a sample; the others are problems."""
    for m in iter_members(tar_path, regular_only=False):
        if not m.regular:
            report.problems.append(f"{name}: member {m.name!r} is not a regular file")
        elif not KEY_RE.match(m.key) or m.ext not in MEMBER_ORDER:
            report.problems.append(f"{name}: unexpected member name {m.name!r}")
        else:
            yield m


def _check_shard(vdir: Path, shard: dict[str, Any], deep: bool, report: VerifyReport,
                 keys: set[str]) -> None:
    tar_path, idx_path = vdir / shard["tar"], vdir / shard["index"]
    name = shard["tar"]
    if not tar_path.is_file():
        report.problems.append(f"{name}: missing")
        return
    size = tar_path.stat().st_size
    if size != shard["bytes"]:
        report.problems.append(f"{name}: size {size} != manifest {shard['bytes']} (truncated?)")
    if sha256_file(tar_path) != shard["sha256"]:
        report.problems.append(f"{name}: sha256 mismatch")
    try:
        samples = list(group_samples(_members(tar_path, name, report)))
    except ShardReadError as e:
        report.problems.append(f"{name}: unreadable tar ({e.reason})")
        return
    if len(samples) != shard["samples"]:
        report.problems.append(f"{name}: {len(samples)} samples != manifest {shard['samples']}")
    for parts in samples:
        key = parts.pop("__key__")
        report.samples_checked += 1
        if key in keys:
            report.problems.append(f"{name}: key {key} appears in more than one place")
        keys.add(key)
        if set(parts) != {"jpg", "txt", "json"}:
            report.problems.append(f"{name}: {key} has members {sorted(parts)}")
            continue
        try:
            meta = json.loads(parts["json"])
            caption = parts["txt"].decode("utf-8")
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            report.problems.append(f"{name}: {key}: bad txt/json ({e})")
            continue
        if not caption.strip() or meta.get("caption") != caption or meta.get("key") != key:
            report.problems.append(f"{name}: {key}: caption/key disagree between txt and json")
        if meta.get("sha256") != hashlib.sha256(parts["jpg"]).hexdigest():
            report.problems.append(f"{name}: {key}: image sha256 differs from KEY.json")
        if deep:
            from PIL import Image

            try:
                with Image.open(io.BytesIO(parts["jpg"])) as im:
                    im.load()
                    if im.mode != "RGB" or im.format != "JPEG":
                        report.problems.append(f"{name}: {key}: not an RGB JPEG ({im.format} "
                                               f"{im.mode})")
            except Exception as e:  # noqa: BLE001
                report.problems.append(f"{name}: {key}: image does not decode ({e})")
    if not idx_path.is_file():
        report.problems.append(f"{shard['index']}: missing")
    elif idx_path.read_bytes() != index_text(tar_path).encode("utf-8"):
        report.problems.append(f"{shard['index']}: index does not match the tar")
    report.shards_checked += 1


def verify_version(version_dir: str | Path, deep: bool = True) -> VerifyReport:
    vdir = Path(version_dir)
    report = VerifyReport(str(vdir))
    try:
        m = load_manifest(vdir)
    except ManifestError as e:
        report.problems.append(str(e))
        return report
    keys: set[str] = set()
    for shard in m["shards"]:
        _check_shard(vdir, shard, deep, report, keys)
    fpath = vdir / "failures.parquet"
    if not fpath.is_file():
        report.problems.append("failures.parquet: missing")
    else:
        try:
            import pyarrow.parquet as pq

            n = pq.read_metadata(fpath).num_rows
            c = m["counts"]
            expect = c["failed"] + c["filtered"] + c["duplicate"]
            if n != expect:
                report.problems.append(f"failures.parquet: {n} rows != failed+filtered+duplicate "
                                       f"({expect})")
            _check_reasons(pq.read_table(fpath, columns=["status", "reason"]).to_pylist(), m,
                           report)
        except Exception as e:  # noqa: BLE001
            report.problems.append(f"failures.parquet: unreadable ({e})")
    retry = m.get("retry_of")
    if retry is not None and len(retry.get("table_rows", [])) != m["counts"]["input"]:
        report.problems.append(f"manifest: retry_of lists {len(retry.get('table_rows', []))} "
                               f"rows != input {m['counts']['input']}")
    return report


def _check_reasons(rows: list[dict[str, Any]], m: dict[str, Any], report: VerifyReport) -> None:
    """failures.parquet's (status, reason) counts are the manifest's ``reasons`` (every reason,
    e.g. robots_disallowed, opt_out, near_duplicate, contaminated, rate_limited)."""
    if "reasons" not in m:
        return
    got: dict[str, dict[str, int]] = {}
    for r in rows:
        d = got.setdefault(r["status"], {})
        d[r["reason"]] = d.get(r["reason"], 0) + 1
    want = {s: d for s, d in m["reasons"].items() if d}
    if got != want:
        report.problems.append(f"failures.parquet: reasons {got} != manifest reasons {want}")
