"""ingest.fetch against real loopback servers: per-hop address checks (127.0.0.2 as the
"private" network), rebinding, redirect caps and loops, robots.txt, opt-outs, Retry-After and
per-host intervals, the whole-request timeout; and once through real img2dataset workers."""
import io
import time

import pytest
from PIL import Image

from ingest import safety
from ingest.accounting import read_failures
from ingest.config import IngestConfig
from ingest.download import ingest_urls
from ingest.fetch import Fetcher, FetchPolicy, FetchRefused, download_with_retry
from ingest.http_server import serve_routes
from mamo.core.config import load_config

ONLY_LOCAL = ("127.0.0.1/32",)


def _jpeg(seed=0):
    b = io.BytesIO()
    Image.new("RGB", (64, 48), (40 + seed * 30 % 200, 90, 160)).save(b, format="JPEG")
    return b.getvalue()


def _ok(body, headers=None):
    return lambda n: (200, {"Content-Type": "image/jpeg", **(headers or {})}, body)


def _redirect(to):
    return lambda n: (302, {"Location": to}, b"")


ROBOTS = (b"User-agent: mamo-ingest\nDisallow: /private/\n\nUser-agent: *\nAllow: /\n")


@pytest.fixture
def second_server():
    """A server on 127.0.0.2 (outside 127.0.0.1/32) holding a valid image; its log."""
    log = []
    with serve_routes({"/img.jpg": _ok(_jpeg(1))}, host="127.0.0.2", log=log) as base:
        yield base, log


def _policy(**kw):
    kw.setdefault("allow_networks", ONLY_LOCAL)
    kw.setdefault("timeout", 5.0)
    return FetchPolicy(**kw)


def test_redirect_to_disallowed_network_is_refused_without_a_request(second_server):
    other, other_log = second_server
    routes = {"/a.jpg": _redirect(f"{other}/img.jpg"), "/robots.txt": lambda n: (404, {}, b"")}
    with serve_routes(routes) as base:
        with pytest.raises(FetchRefused) as e:
            Fetcher(_policy()).fetch(f"{base}/a.jpg")
    assert e.value.reason == "private_address"
    assert "redirect hop 1" in e.value.detail and "127.0.0.2" in e.value.detail
    assert other_log == []  # no request, not even robots.txt
    # the same image is fetched when its network is allowed
    r = Fetcher(_policy(allow_networks=("127.0.0.0/8",))).fetch(f"{other}/img.jpg")
    assert r.body == _jpeg(1)


def test_redirect_inside_allowed_network_passes_and_loops_fail():
    body = _jpeg(2)
    routes = {"/a": _redirect("/b"), "/b": _redirect("/img.jpg"), "/img.jpg": _ok(body),
              "/loop1": _redirect("/loop2"), "/loop2": _redirect("/loop1"),
              "/robots.txt": lambda n: (404, {}, b"")}
    routes.update({f"/chain{i}": _redirect(f"/chain{i + 1}") for i in range(10)})
    with serve_routes(routes) as base:
        f = Fetcher(_policy(max_redirects=3))
        r = f.fetch(f"{base}/a")
        assert r.body == body and len(r.redirects) == 2
        for url, why in ((f"{base}/loop1", "loop"), (f"{base}/chain0", "more than 3")):
            with pytest.raises(FetchRefused) as e:
                f.fetch(url)
            assert e.value.reason == "too_many_redirects" and why in e.value.detail


def test_rebinding_second_answer_private_is_refused(monkeypatch, second_server):
    other, other_log = second_server
    port = other.rsplit(":", 1)[1]
    answers = iter([("127.0.0.1",), ("127.0.0.2",)])
    monkeypatch.setattr(safety, "RESOLVER", lambda host: next(answers))
    safety._resolve.cache_clear()
    url = f"http://rebind.test:{port}/img.jpg"
    # the plan-time check sees the first (allowed) answer ...
    assert safety.check_url(url, allow_networks=ONLY_LOCAL) == url
    # ... the fetch resolves again, checks that answer, and refuses it
    with pytest.raises(FetchRefused) as e:
        Fetcher(_policy(robots=False)).fetch(url)
    assert e.value.reason == "private_address"
    assert other_log == []
    safety._resolve.cache_clear()


def test_connection_goes_to_the_checked_address(monkeypatch):
    log = []
    with serve_routes({"/img.jpg": _ok(_jpeg(3))}, log=log) as base:
        port = base.rsplit(":", 1)[1]
        monkeypatch.setattr(safety, "RESOLVER", lambda host: ("127.0.0.1",))
        r = Fetcher(_policy(robots=False)).fetch(f"http://pinned.test:{port}/img.jpg")
    assert r.body == _jpeg(3)
    assert log[-1][2] == f"pinned.test:{port}"  # Host header names the host, socket the address


def test_robots_txt_token_groups_500_and_404():
    calls = []
    routes = {"/robots.txt": lambda n: (calls.append(n) or 200, {}, ROBOTS),
              "/private/x.jpg": _ok(_jpeg(4)), "/public/x.jpg": _ok(_jpeg(4))}
    with serve_routes(routes) as base:
        ours = Fetcher(_policy())
        with pytest.raises(FetchRefused) as e:
            ours.fetch(f"{base}/private/x.jpg")
        assert e.value.reason == "robots_disallowed" and "mamo-ingest" in e.value.detail
        assert ours.fetch(f"{base}/public/x.jpg").body == _jpeg(4)
        assert len(calls) == 1  # once per host
        other = Fetcher(_policy(ua_token="otherbot", user_agent="otherbot/1.0"))
        assert other.fetch(f"{base}/private/x.jpg").body == _jpeg(4)
    with serve_routes({"/robots.txt": lambda n: (500, {}, b"oops"), "/x.jpg": _ok(b"1")}) as b5:
        with pytest.raises(FetchRefused) as e:
            Fetcher(_policy()).fetch(f"{b5}/x.jpg")
        assert e.value.reason == "robots_disallowed" and "disallow all" in e.value.detail
    with serve_routes({"/x.jpg": _ok(b"1")}) as b4:  # robots.txt: 404
        assert Fetcher(_policy()).fetch(f"{b4}/x.jpg").body == b"1"


def test_opt_out_header(tmp_path):
    routes = {"/a.jpg": _ok(_jpeg(5), {"X-Robots-Tag": "noai"}),
              "/b.jpg": _ok(_jpeg(5), {"X-Robots-Tag": "otherbot: noml"}),
              "/c.jpg": _ok(_jpeg(5), {"X-Robots-Tag": "mamo-ingest: noimageai, nofollow"})}
    with serve_routes(routes) as base:
        p = _policy(robots=False)
        _, img, err = download_with_retry((0, f"{base}/a.jpg"), retries=2, policy=p)
        assert img is None and err.startswith("[opt_out] X-Robots-Tag noai")
        _, img, err = download_with_retry((1, f"{base}/b.jpg"), policy=p)
        assert err is None and img.getvalue() == _jpeg(5)  # scoped to another agent
        _, img, err = download_with_retry((2, f"{base}/c.jpg"), policy=p)
        assert err.startswith("[opt_out] X-Robots-Tag noimageai")


def test_retry_after_429_then_success_and_host_interval():
    log = []
    routes = {"/limited.jpg": lambda n: (429, {"Retry-After": "1"}, b"") if n == 0
              else (200, {}, _jpeg(6))}
    routes.update({f"/{i}.jpg": _ok(_jpeg(i)) for i in range(6)})
    with serve_routes(routes, log=log) as base:
        f = Fetcher(_policy(robots=False, min_interval=0.2, max_per_host=2))
        r = f.fetch(f"{base}/limited.jpg")
        assert r.body == _jpeg(6)
        waited = log[1][0] - log[0][0]
        assert waited >= 0.95  # Retry-After: 1 honoured
        import concurrent.futures as cf

        start = len(log)
        with cf.ThreadPoolExecutor(6) as ex:
            list(ex.map(lambda i: f.fetch(f"{base}/{i}.jpg"), range(6)))
        times = sorted(t for t, *_ in log[start:])
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert min(gaps) >= 0.18, gaps  # the server never sees more than 1 request / 0.2 s
    with serve_routes({"/x.jpg": lambda n: (503, {"Retry-After": "0"}, b"")}) as base:
        with pytest.raises(FetchRefused) as e:
            Fetcher(_policy(robots=False, rate_limit_retries=1)).fetch(f"{base}/x.jpg")
        assert e.value.reason == "rate_limited"


def test_whole_request_timeout_bounds_a_trickling_server():
    def trickle(n):
        def body():
            for _ in range(30):
                yield b"x"
                time.sleep(1.0)
        return 200, {}, body()

    with serve_routes({"/slow.jpg": trickle}) as base:
        t0 = time.monotonic()
        _, img, err = download_with_retry((0, f"{base}/slow.jpg"),
                                          policy=_policy(robots=False, timeout=2.0))
        elapsed = time.monotonic() - t0
    assert img is None and "timed out" in err
    assert elapsed < 10  # bounded by the 2 s whole-request timeout, not 30 s of 1-byte reads


def test_response_size_cap():
    with serve_routes({"/big.jpg": _ok(b"x" * 5000), "/small.jpg": _ok(b"y" * 900)}) as base:
        p = _policy(robots=False, max_bytes=1024)
        _, img, err = download_with_retry((0, f"{base}/big.jpg"), retries=1, policy=p)
        assert img is None and err.startswith("[response_too_large]")
        _, img, err = download_with_retry((1, f"{base}/small.jpg"), policy=p)
        assert err is None and img.getvalue() == b"y" * 900


def _cfg(tmp_path, table, **over):
    o = [f"out={tmp_path / 'out'}", "dataset=web", "version=v1", "source.kind=urls",
         f"source.path={table}", "download.allow_networks=[127.0.0.1/32]",
         "download.image_size=32", "download.processes=1", "download.threads=4",
         "download.retries=0", "download.timeout=5", "samples_per_shard=10", "progress=false",
         "filters.min_image_size=8"]
    o += [f"{k}={v}" for k, v in over.items()]
    return load_config(IngestConfig, None, o)


def test_through_img2dataset_workers(tmp_path, second_server):
    import pyarrow as pa
    import pyarrow.parquet as pq

    other, other_log = second_server
    routes = {"/robots.txt": lambda n: (200, {}, ROBOTS),
              "/good.jpg": _ok(_jpeg(7)),
              "/to_other": _redirect(f"{other}/img.jpg"),
              "/to_good": _redirect("/good2.jpg"), "/good2.jpg": _ok(_jpeg(8)),
              "/loop": _redirect("/loop"),
              "/private/p.jpg": _ok(_jpeg(9)),
              "/noai.jpg": _ok(_jpeg(10), {"X-Robots-Tag": "noai"}),
              "/limited.jpg": lambda n: (429, {"Retry-After": "1"}, b"") if n == 0
              else (200, {}, _jpeg(11))}
    expected = {"/good.jpg": ("written", ""), "/to_other": ("failed", "private_address"),
                "/to_good": ("written", ""), "/loop": ("failed", "too_many_redirects"),
                "/private/p.jpg": ("filtered", "robots_disallowed"),
                "/noai.jpg": ("filtered", "opt_out"), "/limited.jpg": ("written", "")}
    log = []
    with serve_routes(routes, log=log) as base:
        paths = list(expected)
        table = tmp_path / "urls.parquet"
        pq.write_table(pa.table({"url": [base + p for p in paths],
                                 "caption": [f"row {p}" for p in paths]}), table)
        starts = tmp_path / "starts.jsonl"
        # a wrapper left in place by an earlier run in this process, with a policy that has
        # no interval and no log: the run must use its own policy, not nest inside it
        import functools
        import sys

        import img2dataset  # noqa: F401
        from ingest.fetch import SafeDownloader
        i2d_main = sys.modules["img2dataset.main"]
        true_cls = i2d_main.Downloader
        stale = functools.wraps(true_cls)(lambda *a, **k: SafeDownloader(true_cls(*a, **k), FetchPolicy()))
        i2d_main.Downloader = stale
        try:
            m = ingest_urls(_cfg(tmp_path, table, **{"download.min_host_interval": "0.1",
                                                     "download.request_log": str(starts)}))
        finally:
            i2d_main.Downloader = true_cls
    # Per-host interval, in img2dataset's workers, from the starts they logged as they passed
    # the shared gate. (The server's own times are no measure of it: on a loaded machine its
    # thread was seen handling a run's requests in one late burst.)
    import json
    times = sorted(json.loads(line)["time"] for line in starts.read_text().splitlines())
    assert len(times) == len(log), (len(times), len(log))  # every request went through the gate
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.1 - 1e-6
    assert sum(1 for _, p, _ in log if p == "/robots.txt") == 1
    fails = {r["row"]: (r["status"], r["reason"], r["detail"])
             for r in read_failures(tmp_path / "out" / "web" / "v1" / "failures.parquet")}
    for i, p in enumerate(paths):
        got = fails.get(i, ("written", "", ""))
        assert got[:2] == expected[p], (p, got)
    assert "redirect hop 1" in fails[paths.index("/to_other")][2]
    assert other_log == []
    assert m["counts"]["written"] == 3 and m["counts"]["filtered"] == 2
    assert m["reasons"]["filtered"] == {"opt_out": 1, "robots_disallowed": 1}


def test_https_pinned_address_keeps_the_certificate_check(tmp_path, monkeypatch):
    """https through the pinned connection: TLS name check against the host name while the
    socket goes to the checked address; a wrong name fails."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=tls.test",
                    "-addext", "subjectAltName=DNS:tls.test"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts our self-signed cert
    monkeypatch.setattr(safety, "RESOLVER", lambda host: ("127.0.0.1",))
    with serve_routes({"/img.jpg": _ok(_jpeg(12))}, tls=ctx) as base:
        port = base.rsplit(":", 1)[1]
        r = Fetcher(_policy(robots=False)).fetch(f"https://tls.test:{port}/img.jpg")
        assert r.body == _jpeg(12)
        with pytest.raises(ssl.SSLCertVerificationError):
            Fetcher(_policy(robots=False)).fetch(f"https://other.test:{port}/img.jpg")


def test_a_process_that_oversleeps_its_turn_does_not_start_next_to_the_following_one(tmp_path, monkeypatch):
    """Three gates on one state dir stand for three worker processes. The second to come
    oversleeps its wait (a loaded machine); the starts must still be an interval apart, which
    a schedule reserved ahead of time does not give (the late sleeper starts right after the
    one scheduled behind it)."""
    import threading

    from ingest import fetch

    policy = FetchPolicy(min_interval=0.2, max_per_host=3, state_dir=str(tmp_path))
    gates = [fetch.HostGate(policy) for _ in range(3)]
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        real_sleep(seconds + (0.3 if threading.current_thread().name == "late" else 0.0))

    monkeypatch.setattr(fetch.time, "sleep", sleep)
    starts: dict[str, float] = {}

    def go(name: str, gate) -> None:
        with gate.slot("http://example.test"):
            starts[name] = time.time()

    go("first", gates[0])
    late = threading.Thread(target=go, args=("late", gates[1]), name="late")
    late.start()
    real_sleep(0.1)
    go("on_time", gates[2])
    late.join()
    times = sorted(starts.values())
    assert len(times) == 3
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.19, starts
