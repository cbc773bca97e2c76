"""--retry-failed: a row that answered 503 the first time is retried into a new version and
succeeds; permanent failures are not retried; the chain's accounting is exact."""
import io
import json
import subprocess
import sys

import pyarrow as pa
import pytest
import pyarrow.parquet as pq
from PIL import Image

from ingest.accounting import read_failures
from ingest.http_server import serve_routes
from ingest.manifest import load_manifest, manifest_sha256
from ingest.shards import read_shard
from ingest.verify import verify_version


def _jpeg(c):
    b = io.BytesIO()
    Image.new("RGB", (40, 40), c).save(b, format="JPEG")
    return b.getvalue()


def _ingest(tmp_path, version, *extra):
    cmd = [sys.executable, "-m", "ingest", "run", f"out={tmp_path / 'out'}", "dataset=web",
           f"version={version}", "source.kind=urls", f"source.path={tmp_path / 'urls.parquet'}",
           "download.allow_networks=[127.0.0.1/32]", "download.image_size=32",
           "download.processes=1", "download.threads=2", "download.retries=0",
           "download.rate_limit_retries=0", "download.robots_txt=false", "progress=false",
           "filters.min_image_size=8", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def _flow_overrides(tmp_path, version):
    return [f"out={tmp_path / 'out'}", "dataset=web", f"version={version}",
            "download.allow_networks=[127.0.0.1/32]", "download.image_size=32",
            "download.processes=1", "download.threads=2", "download.retries=0",
            "download.rate_limit_retries=0", "download.robots_txt=false",
            "filters.min_image_size=8"]


@pytest.mark.slow  # three img2dataset runs (~15 s each on 2 cores), one through Prefect
def test_retry_failed_picks_up_a_503_row(tmp_path, prefect_harness):
    from prefect.artifacts import Artifact

    from flows.ingest_flow import ingest_flow

    routes = {"/ok.jpg": lambda n: (200, {}, _jpeg((200, 0, 0))),
              "/flaky.jpg": lambda n: (503, {}, b"busy") if n == 0 else (200, {}, _jpeg((0, 200, 0))),
              "/gone.jpg": lambda n: (404, {}, b"")}
    with serve_routes(routes) as base:
        paths = ["/ok.jpg", "/flaky.jpg", "/gone.jpg"]
        pq.write_table(pa.table({"url": [base + p for p in paths],
                                 "caption": ["red", "green", "gone"]}), tmp_path / "urls.parquet")
        s1 = _ingest(tmp_path, "v1")
        v1 = tmp_path / "out" / "web" / "v1"
        assert s1["counts"]["written"] == 1 and s1["reasons"]["failed"] == {
            "http_error": 1, "rate_limited": 1}
        # the flow's parameter ...
        s2 = ingest_flow(overrides=_flow_overrides(tmp_path, "v2"), retry_failed=str(v1))
        # ... and the CLI flag (the server now answers the flaky row at once)
        s3 = _ingest(tmp_path, "v3", "--retry-failed", str(v1))
    art = Artifact.get("ingest-stats")
    assert art is not None and "Retry of the transiently failed rows" in art.data
    assert s2["counts"] == {"input": 1, "written": 1, "failed": 0, "filtered": 0,
                            "duplicate": 0}
    # v3 fetched the same row again: its image is now a near-duplicate of v2's
    assert s3["counts"]["input"] == 1 and s3["reasons"]["duplicate"] == {"near_duplicate": 1}
    v2 = tmp_path / "out" / "web" / "v2"
    m1, m2 = load_manifest(v1), load_manifest(v2)
    assert m2["retry_of"]["rows"] == [1] and m2["retry_of"]["table_rows"] == [1]
    assert m2["retry_of"]["manifest_sha256"] == manifest_sha256(v1)
    samples = [s for sh in m2["shards"] for s in read_shard(v2 / sh["tar"])]
    assert [s["txt"] for s in samples] == ["green"] and samples[0]["json"]["source_row"] == 1
    # chain: every table row is accounted for exactly once (v1 written, v2 written, still failed)
    still_failed = {r["row"] for r in read_failures(v1 / "failures.parquet")} - set(
        m2["retry_of"]["table_rows"])
    assert still_failed == {2}
    assert m1["counts"]["written"] + m2["counts"]["written"] + len(still_failed) == 3
    assert verify_version(v1).ok and verify_version(v2).ok


def test_which_rows_are_transient():
    from ingest.retry import is_transient

    def row(status, reason, detail=""):
        return {"status": status, "reason": reason, "detail": detail}

    assert is_transient(row("failed", "timeout"))
    assert is_transient(row("failed", "rate_limited"))
    assert is_transient(row("failed", "connection_error"))
    assert is_transient(row("failed", "http_error", "HTTP Error 502: Bad Gateway"))
    assert not is_transient(row("failed", "http_error", "HTTP Error 404: Not Found"))
    assert not is_transient(row("filtered", "opt_out"))
    assert not is_transient(row("failed", "private_address"))
    assert not is_transient(row("duplicate", "near_duplicate"))
    assert not is_transient(row("filtered", "robots_disallowed", "robots.txt of x disallows /p"))
    assert is_transient(row("filtered", "robots_disallowed",
                            "robots.txt of x answered a server error: disallow all"))
