"""The real download path (img2dataset against a loopback HTTP server) with bad rows, exact
accounting, journal resume of post-processing, and URL safety."""
import io
import json
import shutil

import pytest
from PIL import Image

from ingest import synthetic as syn
from ingest.accounting import read_failures
from ingest.config import IngestConfig
from ingest.download import download_chunks, finalize, finalize_chunk, plan_download
from ingest.http_server import serve_directory
from ingest.manifest import load_manifest
from ingest.safety import UrlRefused, check_url
from ingest.shards import read_shard
from ingest.verify import verify_version
from mamo.core.config import load_config


def _png(img):
    b = io.BytesIO()
    img.save(b, format="PNG")
    return b.getvalue()


def _jpeg(img, **kw):
    b = io.BytesIO()
    img.save(b, format="JPEG", quality=90, **kw)
    return b.getvalue()



def _cfg(tmp_path, table, **over):
    o = [f"out={tmp_path / 'out'}", "dataset=web", "version=v1", "source.kind=urls",
         f"source.path={table}", "download.allow_private=true", "download.image_size=64",
         "download.processes=1", "download.threads=8", "download.retries=0",
         "download.timeout=5", "samples_per_shard=6", "progress=false"]
    o += [f"{k}={v}" for k, v in over.items()]
    return load_config(IngestConfig, None, o)


@pytest.fixture(scope="module")
def bad_rows_site(tmp_path_factory, free_port):
    """Files for every kind of bad row, and the expected outcome of each table row."""
    d = tmp_path_factory.mktemp("site")
    good = [syn.render_image(syn.generate_scene(0, i), 80) for i in range(7)]
    for i, im in enumerate(good):
        (d / f"good{i}.png").write_bytes(_png(im))
    (d / "copy_of_good0.png").write_bytes((d / "good0.png").read_bytes())
    (d / "page.jpg").write_bytes(b"<!doctype html><html><body>not an image</body></html>")
    (d / "truncated.jpg").write_bytes(_jpeg(good[1])[:300])
    Image.new("L", (10000, 10000), 128).save(d / "huge.png", format="PNG")
    Image.new("RGB", (10, 10), (255, 0, 0)).save(d / "tiny.png", format="PNG")
    (d / "cmyk.jpg").write_bytes(_jpeg(good[2].convert("CMYK")))
    (d / "grey.jpg").write_bytes(_jpeg(good[3].convert("L")))
    rgba = good[4].convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 128))
    (d / "alpha.png").write_bytes(_png(rgba))
    closed = free_port()
    # (url path or full url, caption bytes, expected (status, reason))
    rows = [
        ("/good0.png", "a  small\tred circle\n", ("written", "")),
        ("/missing.png", "404 row", ("failed", "http_error")),
        (f"http://127.0.0.1:{closed}/x.png", "refused port", ("failed", "connection_error")),
        ("htp:/broken url", "malformed", ("failed", "malformed_url")),
        ("ftp://127.0.0.1/x.png", "ftp", ("failed", "unsupported_scheme")),
        ("/page.jpg", "html saved as jpg", ("failed", "decode_error")),
        ("/truncated.jpg", "truncated jpeg", ("failed", "decode_error")),
        ("/huge.png", "huge image", ("filtered", "image_too_large")),
        ("/tiny.png", "tiny image", ("filtered", "image_too_small")),
        ("/cmyk.jpg", "cmyk jpeg", ("written", "")),
        ("/grey.jpg", "greyscale jpeg", ("written", "")),
        ("/alpha.png", "png with alpha", ("written", "")),
        ("/good1.png", "   ", ("filtered", "empty_caption")),
        ("/good2.png", "x" * 5000, ("filtered", "caption_too_long")),
        ("/good3.png", b"caf\xe9 bad utf-8", ("filtered", "invalid_utf8")),
        ("/good0.png", "same url again", ("duplicate", "duplicate_url")),
        ("/copy_of_good0.png", "same bytes, other url", ("duplicate", "duplicate_image")),
        ("/good5.png", "Cafe\u0301 decomposed", ("written", "")),
        ("/good6.png", "a good one", ("written", "")),
    ]
    return d, rows


def _write_tsv(path, base, rows):
    """A TSV with every caption quoted (tabs and newlines inside), written as raw bytes so that
    one caption can be invalid UTF-8."""
    lines = [b"url\tcaption\tnote"]
    for i, (u, cap, _) in enumerate(rows):
        url = (base + u) if u.startswith("/") else u
        capb = cap if isinstance(cap, bytes) else cap.encode()
        lines.append(url.encode() + b'\t"' + capb.replace(b'"', b'""') + b'"\t' + f"n{i}".encode())
    path.write_bytes(b"\n".join(lines) + b"\n")


@pytest.mark.slow
def test_bad_rows_exact_accounting(tmp_path, bad_rows_site):
    site, rows = bad_rows_site
    with serve_directory(site) as base:
        table = tmp_path / "urls.tsv"
        _write_tsv(table, base, rows)
        cfg = _cfg(tmp_path, table, **{"source.extra_cols": "[note]"})
        vdir, plan = plan_download(cfg)
        download_chunks(cfg, vdir, plan)
    assert plan.n_input == len(rows)
    # keep an unfinished copy to check that post-processing resumes from its journal
    partial = tmp_path / "out" / "web" / "v1-partial"
    shutil.copytree(vdir, partial)
    m = finalize(cfg, vdir, plan)

    expected = {i: exp for i, (_, _, exp) in enumerate(rows)}
    n = {s: sum(1 for e in expected.values() if e[0] == s) for s in
         ("written", "failed", "filtered", "duplicate")}
    assert m["counts"] == {"input": len(rows), **n}
    failures = {r["row"]: (r["status"], r["reason"]) for r in read_failures(vdir / "failures.parquet")}
    assert failures == {i: e for i, e in expected.items() if e[0] != "written"}

    samples = [s for sh in m["shards"] for s in read_shard(vdir / sh["tar"])]
    assert sorted(s["json"]["row"] for s in samples) == sorted(
        i for i, e in expected.items() if e[0] == "written")
    by_row = {s["json"]["row"]: s for s in samples}
    assert by_row[0]["txt"] == "a small red circle"  # whitespace collapsed
    assert by_row[17]["txt"] == "Caf\u00e9 decomposed"  # NFC
    assert by_row[0]["json"]["note"] == "n0"
    for s in samples:
        img = Image.open(io.BytesIO(s["jpg"]))
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (64, 64)
        assert s["json"]["url"].startswith("http://127.0.0.1:")
        for k in ("key", "caption", "width", "height", "original_width", "original_height",
                  "sha256"):
            assert k in s["json"]
    assert by_row[7 + 2]["json"]["original_width"] == 80
    assert verify_version(vdir).ok
    assert not (vdir / "_work").exists()

    # post-processing resumes: one chunk journaled, a line cut by a kill, then finalize
    from ingest.download import _append_journal, work_dir

    entry = finalize_chunk(cfg, partial, 0, 0, set())
    _append_journal(work_dir(partial) / "journal.jsonl", entry)
    with open(work_dir(partial) / "journal.jsonl", "a") as f:
        f.write('{"chunk": 1, "shard": {"tar": "shar')
    m2 = finalize(cfg, partial, plan)
    assert [s["sha256"] for s in m2["shards"]] == [s["sha256"] for s in m["shards"]]
    assert m2["counts"] == m["counts"]


def test_url_safety():
    with pytest.raises(UrlRefused) as e:
        check_url("http://127.0.0.1:8000/a.jpg")
    assert e.value.reason == "private_address"
    for url in ("http://10.1.2.3/x", "http://169.254.169.254/latest", "http://[::1]/x",
                "http://localhost/x", "http://0.0.0.0/x"):
        with pytest.raises(UrlRefused):
            check_url(url)
    assert check_url("http://127.0.0.1:8000/a.jpg", allow_private=True)
    assert check_url("https://93.184.216.34/a.jpg") == "https://93.184.216.34/a.jpg"
    for url, reason in (("file:///etc/passwd", "unsupported_scheme"), ("javascript:alert(1)",
                        "unsupported_scheme"), ("//host/x.jpg", "malformed_url"), ("http://", "malformed_url"),
                        ("http://x:99999/", "malformed_url"), ("http://a b/", "malformed_url")):
        with pytest.raises(UrlRefused) as e:
            check_url(url, allow_private=True)
        assert e.value.reason == reason, url


def test_private_hosts_refused_by_default(tmp_path):
    table = tmp_path / "t.jsonl"
    table.write_text(json.dumps({"url": "http://127.0.0.1:1/a.png", "caption": "x"}) + "\n"
                     + "{not json\n")
    cfg = _cfg(tmp_path, table, **{"download.allow_private": "false"})
    vdir, plan = plan_download(cfg)
    assert plan.n_chunks == 0
    m = finalize(cfg, vdir, plan)  # nothing to download
    assert m["counts"] == {"input": 2, "written": 0, "failed": 2, "filtered": 0, "duplicate": 0}
    assert m["reasons"]["failed"] == {"malformed_row": 1, "private_address": 1}
    assert load_manifest(vdir)["shards"] == []


def test_distributor_missing_is_a_clear_error(tmp_path):
    from ingest.img2dataset_runner import DistributorUnavailable, check_distributor

    check_distributor("multiprocessing")
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        with pytest.raises(DistributorUnavailable, match="pip install ray"):
            check_distributor("ray")


@pytest.mark.parametrize("workers,n", [(1, 5), (2, 0), (2, 1), (2, 17), (3, 200)])
def test_ordered_map_keeps_order_and_bounds_look_ahead(workers, n):
    """The post-process consumes decoded images in row order; the threads never run more
    than the window (rounded up to whole batches) ahead of the consumer."""
    import threading

    from ingest.download import _ordered_map

    lock, started, consumed, worst = threading.Lock(), [0], [0], [0]

    def fn(x):
        with lock:
            started[0] += 1
            worst[0] = max(worst[0], started[0] - consumed[0])
        return x * x

    out = []
    for y in _ordered_map(fn, list(range(n)), workers, window=32, batch=8):
        with lock:
            consumed[0] += 1
        out.append(y)
    assert out == [x * x for x in range(n)]
    assert worst[0] <= 32 + 8
