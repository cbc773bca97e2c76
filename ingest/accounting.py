"""Exact accounting of input rows: every row ends as written, failed(reason), filtered(reason)
or duplicate(reason), and the counts add up to the number of input rows.

Rows that were not written go to ``failures.parquet`` (row, status, reason, detail, url or
source path, caption); the manifest carries the totals and a per-reason breakdown.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mamo.core.files import atomic_path

STATUSES = ("written", "failed", "filtered", "duplicate")
FAILURE_COLUMNS = ("row", "status", "reason", "detail", "url", "caption")


@dataclass
class RowOutcome:
    row: int
    status: str  # one of STATUSES
    reason: str = ""
    detail: str = ""
    url: str = ""
    caption: str = ""


@dataclass
class Accounting:
    """Collects one outcome per input row; refuses to record a row twice."""

    n_input: int = 0
    outcomes: dict[int, RowOutcome] = field(default_factory=dict)

    def record(self, row: int, status: str, reason: str = "", detail: str = "", url: str = "",
               caption: str = "") -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        if row in self.outcomes:
            raise ValueError(f"input row {row} accounted twice ({self.outcomes[row].status}, "
                             f"then {status})")
        if status != "written" and not reason:
            raise ValueError(f"row {row}: a {status} row needs a reason")
        self.outcomes[row] = RowOutcome(row, status, reason, detail[:500], url[:2000],
                                        caption[:500])

    def written(self, row: int) -> None:
        self.record(row, "written")

    def counts(self) -> dict[str, int]:
        c = Counter(o.status for o in self.outcomes.values())
        return {"input": self.n_input, **{s: int(c.get(s, 0)) for s in STATUSES}}

    def reasons(self) -> dict[str, dict[str, int]]:
        out: dict[str, Counter] = {s: Counter() for s in STATUSES if s != "written"}
        for o in self.outcomes.values():
            if o.status != "written":
                out[o.status][o.reason] += 1
        return {s: dict(sorted(c.items())) for s, c in out.items()}

    def check_complete(self) -> None:
        """Every input row has exactly one outcome (raises otherwise)."""
        missing = [r for r in range(self.n_input) if r not in self.outcomes]
        extra = [r for r in self.outcomes if not 0 <= r < self.n_input]
        if missing or extra:
            raise AssertionError(f"accounting incomplete: {len(missing)} rows without outcome "
                                 f"(first {missing[:5]}), {len(extra)} unknown rows")

    def failures(self) -> list[RowOutcome]:
        return sorted((o for o in self.outcomes.values() if o.status != "written"),
                      key=lambda o: o.row)


def write_failures(path: str | Path, outcomes: list[RowOutcome]) -> None:
    """``failures.parquet`` (always written, possibly with zero rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("row", pa.int64()), ("status", pa.string()), ("reason", pa.string()),
                        ("detail", pa.string()), ("url", pa.string()), ("caption", pa.string())])
    cols: dict[str, list[Any]] = {c: [getattr(o, c) for o in outcomes] for c in FAILURE_COLUMNS}
    # surrogate escapes (invalid UTF-8 in the input) cannot go into a parquet string
    for c in ("detail", "url", "caption"):
        cols[c] = [v.encode("utf-8", "backslashreplace").decode("utf-8") for v in cols[c]]
    table = pa.table(cols, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_failures(path: str | Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()
