"""Retry of a version's transiently failed rows into a new version (``retry_failed=OLD_DIR``,
``python -m ingest run ... --retry-failed OLD_DIR``).

The old version is never rewritten. The new version's input is the old version's rows whose
failure was transient (``is_transient``: ``TRANSIENT`` reasons, a 5xx, a robots.txt 5xx), read again from the same source table (its sha256 must
match the old manifest's), numbered 0..k-1 in old-row order; each sample's KEY.json carries
``source_row`` (the row in the original table) and the manifest ``retry_of`` (the old version,
its manifest sha256 and the old row of every new row). So the chain's accounting stays exact:
old ``failed`` minus the retried rows plus the new version's counts add up to the table.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mamo.core.cli import UserError

from .accounting import read_failures
from .manifest import load_manifest, manifest_sha256

# failed reasons worth another try (5xx only among http_error)
TRANSIENT = {"timeout", "connection_error", "rate_limited", "missing_from_downloader"}


def is_transient(row: dict[str, Any]) -> bool:
    """A row worth another try: a transient failure, or a robots.txt that answered a server
    error (RFC 9309: disallow all for that run only)."""
    if row["status"] == "filtered" and row["reason"] == "robots_disallowed":
        return "answered a server error" in str(row.get("detail") or "")
    if row["status"] != "failed":
        return False
    if row["reason"] == "http_error":
        return str(row.get("detail") or "").startswith("HTTP Error 5")
    return row["reason"] in TRANSIENT


def retry_source(old_vdir: str | Path) -> dict[str, Any]:
    """The old version's source table, its sha256, and the rows to retry."""
    old = Path(old_vdir)
    m = load_manifest(old)
    src = m.get("source", {})
    if src.get("kind") != "urls":
        raise UserError(f"{old}: --retry-failed needs a version ingested from URLs "
                        f"(source kind {src.get('kind')!r})")
    fpath = old / "failures.parquet"
    if not fpath.is_file():
        raise UserError(f"{fpath}: missing; cannot tell which rows failed")
    # a version that was itself a retry: its rows map back to the original table
    back = m.get("retry_of", {}).get("table_rows")
    rows = sorted(int(r["row"]) for r in read_failures(fpath) if is_transient(r))
    return {"path": src["path"], "sha256": src["sha256"], "url_col": src.get("url_col", "url"),
            "caption_col": src.get("caption_col", "caption"),
            "old_rows": rows, "table_rows": [back[r] for r in rows] if back else rows,
            "retry_of": {"version_dir": str(old.resolve()), "dataset": m["dataset"],
                         "version": m["version"], "manifest_sha256": manifest_sha256(old)}}


def retry_overrides(old_vdir: str | Path) -> list[str]:
    """Dotted overrides that make a config retry ``old_vdir`` (its source table, kind urls)."""
    src = retry_source(old_vdir)
    return ["source.kind=urls", f"source.path={src['path']}",
            f"source.url_col={src['url_col']}", f"source.caption_col={src['caption_col']}",
            f"retry_failed={Path(old_vdir).resolve()}"]
