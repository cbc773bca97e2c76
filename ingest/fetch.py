"""Safe, polite fetching inside img2dataset's workers.

img2dataset stays the download engine (distributor, reader, resizer, writer); only the fetch of
one URL is ours. ``img2dataset.main.download`` builds a ``Downloader`` and pickles it to each
spawned worker; ``ingest.img2dataset_runner`` makes it build a ``SafeDownloader`` instead (the
original wrapped, plus a ``FetchPolicy``). In the worker, ``SafeDownloader.__call__`` first points the
module global ``img2dataset.downloader.download_image_with_retry`` (what its thread pool calls
per row) at ``download_with_retry`` below, then runs img2dataset's own ``download_shard``.

(``SafeDownloader`` wraps the ``Downloader`` instance rather than subclassing it, so importing
this module does not import img2dataset.)

One fetch (``fetch``):
- every hop (the first URL and each redirect) is checked by ``ingest.safety``'s policy
  (scheme, every resolved address against ``allow_private``/``allow_networks``) and the TCP
  connection goes to the address that was checked (``_PinnedHTTP(S)Connection``: no second
  resolution, so a DNS answer that changes after the check cannot redirect the connection);
  redirects are followed by hand, at most ``max_redirects``;
- robots.txt of each hop's origin is read once per run (``RobotsCache``, through this same
  fetch) and matched for ``ua_token``;
- per-host politeness (``HostGate``): at most ``max_per_host`` requests in flight and
  ``min_interval`` seconds between request starts, across worker processes (lock files in
  ``state_dir``); 429/503 wait for ``Retry-After`` (bounded) a few times, then ``rate_limited``;
- ``timeout`` bounds the whole fetch (every hop's connect, headers and body; Retry-After waits
  are added to it), not each read: a watchdog shuts the socket at the deadline, so a server
  trickling bytes cannot hold a thread;
- X-Robots-Tag opt-out directives end the row as ``opt_out``;
- a body over ``max_bytes`` ends it as ``response_too_large`` (read stops there).

A refused row's error message is ``"[reason] detail"``; ``ingest.download`` turns the tag into
the row's reason (``FILTERED_REASONS`` are filtered, the others failed).
"""
from __future__ import annotations

import email.utils
import fcntl
import hashlib
import http.client
import io
import json
import os
import socket
import threading
import time
import urllib.robotparser
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urljoin, urlsplit

from .safety import UrlRefused, address_allowed, check_syntax, resolve_host

OPT_OUT_DIRECTIVES = ("noai", "noimageai", "noindex", "noimageindex", "noml")
REDIRECTS = (301, 302, 303, 307, 308)
# reasons this module tags that end a row as filtered (the others: failed)
FILTERED_REASONS = frozenset({"robots_disallowed", "opt_out"})
MAX_ROBOTS_BYTES = 500 * 1024  # RFC 9309 2.5: parse at least 500 KiB


def default_user_agent(token: str, contact_url: str) -> str:
    return f"{token}/1.0 (+{contact_url})" if contact_url else f"{token}/1.0"


@dataclass(frozen=True)
class FetchPolicy:
    allow_private: bool = False
    allow_networks: tuple[str, ...] = ()
    max_redirects: int = 5
    timeout: float = 10.0  # seconds for the whole request
    ua_token: str = "mamo-ingest"
    user_agent: str = "mamo-ingest/1.0"
    opt_out_directives: tuple[str, ...] = OPT_OUT_DIRECTIVES
    robots: bool = True
    max_per_host: int = 16
    min_interval: float = 0.0  # seconds between request starts to one host
    rate_limit_retries: int = 2
    max_retry_after: float = 30.0  # longer Retry-After values are not waited for
    max_bytes: int = 50 * 1024 * 1024  # a longer body ends the row as response_too_large
    state_dir: str = ""  # robots cache and host locks (shared by worker processes)
    request_log: str = ""  # JSON lines of request starts (download.request_log)


class FetchRefused(Exception):
    """A row refused at fetch time; ``str()`` is ``"[reason] detail"``."""

    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail
        super().__init__(f"[{reason}] {detail}")


@dataclass
class Response:
    url: str
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    redirects: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- connections to a fixed address

class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int | None, addr: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._addr = addr

    def connect(self) -> None:
        self.sock = self.raw_sock = socket.create_connection((self._addr, self.port),
                                                             self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int | None, addr: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._addr = addr

    def connect(self) -> None:
        sock = socket.create_connection((self._addr, self.port), self.timeout)
        # certificate checked against the host name, connection to the checked address
        self.sock = self.raw_sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _Deadline:
    """Shuts the connection's socket when the whole-request time is up."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds
        self.fired = False
        self._conn: http.client.HTTPConnection | None = None
        self._timer: threading.Timer | None = None

    def left(self) -> float:
        return self.end - time.monotonic()

    def watch(self, conn: http.client.HTTPConnection) -> None:
        self._conn = conn
        self._timer = threading.Timer(max(0.0, self.left()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        # (http.client drops conn.sock once the response owns the socket)
        sock = getattr(self._conn, "raw_sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def done(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


# ---------------------------------------------------------------- per-host politeness

def _host_id(origin: str) -> str:
    return hashlib.sha1(origin.encode()).hexdigest()[:16]


class HostGate:
    """At most ``max_per_host`` requests in flight per host and ``min_interval`` seconds between
    their starts, shared by the worker processes through lock files in ``state_dir`` (without
    one: this process only)."""

    def __init__(self, policy: FetchPolicy):
        self.p = policy
        self.dir = Path(policy.state_dir) / "hosts" if policy.state_dir else None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._sems: dict[str, threading.BoundedSemaphore] = {}
        self._next: dict[str, float] = {}

    @contextmanager
    def slot(self, origin: str) -> Iterator[None]:
        with self._lock:
            sem = self._sems.setdefault(origin, threading.BoundedSemaphore(self.p.max_per_host))
        hid = _host_id(origin)
        with sem:  # this process's threads wait here; the lock files are for the others
            if self.dir is None:
                self._wait_interval(lambda: self._claim_local(origin), hid)
                yield
                return
            fd = self._acquire_slot(hid)
            try:
                self._wait_interval(lambda: self._claim_shared(hid), hid)
                yield
            finally:
                os.close(fd)  # releases the flock

    def _acquire_slot(self, hid: str) -> int:
        while True:
            for i in range(self.p.max_per_host):
                fd = os.open(self.dir / f"{hid}.slot{i}", os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    os.close(fd)
            time.sleep(0.005)

    def _wait_interval(self, claim: Callable[[], tuple[float, float]], hid: str) -> None:
        """Wait until ``claim`` records this start (``(start time, 0)``) rather than naming the
        seconds still to wait. A start is recorded only when it happens (checked under the
        lock after any wait), never reserved ahead: a thread or process that overslept its
        turn on a loaded machine would otherwise start late, right next to the next one."""
        if self.p.min_interval <= 0:
            return
        while True:
            when, wait = claim()
            if wait <= 0:
                self._log_start(when, hid)
                return
            time.sleep(wait)

    def _claim_local(self, origin: str) -> tuple[float, float]:
        with self._lock:  # this process only: a monotonic clock
            now = time.monotonic()
            due = self._next.get(origin, 0.0)
            if now >= due:
                self._next[origin] = now + self.p.min_interval
            return time.time(), due - now

    def _claim_shared(self, hid: str) -> tuple[float, float]:
        # wall clock: the schedule is shared between processes, in <hid>.next under a flock
        fd = os.open(self.dir / f"{hid}.next", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 64, 0)
            now = time.time()
            due = float(raw) if raw.strip() else 0.0
            if now >= due:
                os.pwrite(fd, repr(now + self.p.min_interval).encode().ljust(32), 0)
            return now, due - now
        finally:
            os.close(fd)

    def _log_start(self, when: float, host: str) -> None:
        if self.p.request_log:  # one short O_APPEND write per line: workers do not interleave
            line = json.dumps({"time": when, "host": host}) + "\n"
            fd = os.open(self.p.request_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)


# ---------------------------------------------------------------- robots.txt

class RobotsCache:
    """robots.txt per origin, fetched once per run (RFC 9309): 2xx parsed, 4xx allow all,
    5xx or unreachable disallow all (a 5xx filters the rows as ``robots_disallowed``; an
    unreachable host fails them with its network error, so that they can be retried). Cached as JSON in ``state_dir/robots`` so the worker
    processes share one fetch (a lock file per origin)."""

    def __init__(self, policy: FetchPolicy, fetcher: "Fetcher"):
        self.p, self.fetcher = policy, fetcher
        self.dir = Path(policy.state_dir) / "robots" if policy.state_dir else None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        self._mem: dict[str, tuple[str, Any]] = {}
        self._lock = threading.Lock()

    def allowed(self, url: str) -> tuple[bool, str]:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self._lock:
            entry = self._mem.get(origin)
            if entry is None:
                entry = self._load(origin)
                self._mem[origin] = entry
        kind, parser = entry
        if kind == "allow_all":
            return True, ""
        if kind == "disallow_all":
            return False, f"robots.txt of {origin} answered a server error: disallow all"
        if kind == "unreachable":
            # disallow all too, but the row fails as the network fault it is (retryable)
            raise ConnectionError(f"robots.txt of {origin} unreachable, nothing fetched from "
                                  f"it: {parser}")
        assert parser is not None
        ok = parser.can_fetch(self.p.ua_token, url)
        return ok, "" if ok else f"robots.txt of {origin} disallows {parts.path or '/'} for " \
                                 f"{self.p.ua_token!r}"

    def _load(self, origin: str) -> tuple[str, Any]:
        if self.dir is None:
            return self._parse(self._fetch(origin))
        path = self.dir / f"{_host_id(origin)}.json"
        fd = os.open(self.dir / f"{_host_id(origin)}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if path.is_file():
                rec = json.loads(path.read_text(encoding="utf-8"))
            else:
                rec = self._fetch(origin)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(rec), encoding="utf-8")
                os.replace(tmp, path)  # a cache inside _work: readers hold the lock anyway
        finally:
            os.close(fd)
        return self._parse(rec)

    def _fetch(self, origin: str) -> dict[str, Any]:
        url = origin + "/robots.txt"
        try:
            r = self.fetcher.fetch(url, robots=False, accept_status=True)
        except FetchRefused as e:
            return {"origin": origin, "kind": "disallow_all", "detail": str(e)[:300]}
        except (OSError, http.client.HTTPException) as e:
            return {"origin": origin, "kind": "unreachable", "detail": str(e)[:300]}
        if 200 <= r.status < 300:
            return {"origin": origin, "kind": "parsed",
                    "text": r.body[:MAX_ROBOTS_BYTES].decode("utf-8", "replace")}
        if 400 <= r.status < 500:
            return {"origin": origin, "kind": "allow_all", "detail": f"HTTP {r.status}"}
        return {"origin": origin, "kind": "disallow_all", "detail": f"HTTP {r.status}"}

    @staticmethod
    def _parse(rec: dict[str, Any]) -> tuple[str, Any]:
        if rec["kind"] == "unreachable":
            return "unreachable", rec["detail"]
        if rec["kind"] != "parsed":
            return rec["kind"], None
        parser = urllib.robotparser.RobotFileParser()
        parser.parse(rec["text"].splitlines())
        return "parsed", parser


# ---------------------------------------------------------------- the fetch

def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def opt_out(headers: http.client.HTTPMessage, ua_token: str,
            directives: tuple[str, ...]) -> str:
    """The first X-Robots-Tag directive (for all agents or for ``ua_token``) that opts out."""
    token = ua_token.lower()
    for value in headers.get_all("X-Robots-Tag") or []:
        scope, sep, rest = value.partition(":")
        # "googlebot: noindex" is scoped; "noindex, nofollow" is not (no known token before :)
        if sep and "," not in scope and scope.strip().lower() not in directives:
            if scope.strip().lower() != token:
                continue
            value = rest
        for d in value.split(","):
            if d.strip().lower() in directives:
                return d.strip().lower()
    return ""


class Fetcher:
    """One per worker process (threads share it)."""

    def __init__(self, policy: FetchPolicy):
        self.p = policy
        self.gate = HostGate(policy)
        self.robots = RobotsCache(policy, self) if policy.robots else None

    def _check_hop(self, url: str, hop: int) -> tuple[str, str, int | None, str]:
        """(scheme, host, port, address to connect to) for a hop, or ``FetchRefused``."""
        where = f" (redirect hop {hop})" if hop else ""
        try:
            url, host = check_syntax(url)
        except UrlRefused as e:
            raise FetchRefused(e.reason, f"{e}{where}") from None
        parts = urlsplit(url)
        try:
            addrs = resolve_host(host)
        except (OSError, UnicodeError) as e:
            raise FetchRefused("unresolvable_host", f"{host}: {e}{where}") from None
        for a in addrs:
            if not address_allowed(a, self.p.allow_private, self.p.allow_networks):
                raise FetchRefused("private_address",
                                   f"{host} resolves to {a}, a private address{where}: {url[:300]}")
        if not addrs:
            raise FetchRefused("unresolvable_host", f"{host}: no address{where}")
        return parts.scheme.lower(), host, parts.port, addrs[0]

    def _request(self, url: str, scheme: str, host: str, port: int | None, addr: str,
                 deadline: _Deadline) -> tuple[int, http.client.HTTPMessage, bytes]:
        left = deadline.left()
        if left <= 0:
            raise TimeoutError(f"timed out: whole request over {self.p.timeout:g}s")
        cls = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
        conn = cls(host, port, addr, timeout=left)
        deadline.watch(conn)
        try:
            parts = urlsplit(url)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("GET", path, headers={"User-Agent": self.p.user_agent,
                                               "Accept": "*/*", "Connection": "close"})
            resp = conn.getresponse()
            buf = io.BytesIO()
            while True:
                chunk = resp.read1(1 << 16)
                if not chunk:
                    break
                buf.write(chunk)
                if buf.tell() > self.p.max_bytes:
                    raise FetchRefused("response_too_large", f"body over {self.p.max_bytes} "
                                       f"bytes from {url[:300]}")
            if deadline.fired:
                raise TimeoutError("deadline")
            return resp.status, resp.headers, buf.getvalue()
        except (OSError, http.client.HTTPException) as e:
            if deadline.fired:
                raise TimeoutError(f"timed out: whole request over {self.p.timeout:g}s") from None
            raise e
        finally:
            deadline.done()
            conn.close()

    def fetch(self, url: str, robots: bool = True, accept_status: bool = False) -> Response:
        """GET ``url`` by the policy; returns the final 2xx response (any status with
        ``accept_status``), raises ``FetchRefused``, ``TimeoutError`` or an ``OSError``/
        ``HTTPException`` whose text reads like urllib's (``HTTP Error 404: ...``)."""
        redirects: list[str] = []
        seen = {url}
        hop = 0
        # one time budget for every hop; Retry-After waits extend it (they are not slowness)
        budget = [time.monotonic() + self.p.timeout]
        while True:
            scheme, host, port, addr = self._check_hop(url, hop)
            if robots and self.robots is not None:
                ok, why = self.robots.allowed(url)
                if not ok:
                    raise FetchRefused("robots_disallowed", why)
            origin = f"{scheme}://{host}:{port or (443 if scheme == 'https' else 80)}"
            status, headers, body = self._polite_request(url, origin, scheme, host, port, addr,
                                                         budget)
            if status in REDIRECTS and headers.get("Location"):
                nxt = urljoin(url, headers["Location"].strip())
                hop += 1
                if nxt in seen:
                    raise FetchRefused("too_many_redirects", f"redirect loop back to {nxt[:300]}")
                if hop > self.p.max_redirects:
                    raise FetchRefused("too_many_redirects",
                                       f"more than {self.p.max_redirects} redirects from "
                                       f"{redirects[0] if redirects else url}"[:400])
                redirects.append(url)
                seen.add(nxt)
                url = nxt
                continue
            if not accept_status and not 200 <= status < 300:
                why = http.client.responses.get(status, "")
                raise http.client.HTTPException(f"HTTP Error {status}: {why}")
            return Response(url, status, headers, body, redirects)

    def _polite_request(self, url: str, origin: str, scheme: str, host: str, port: int | None,
                        addr: str, budget: list[float]
                        ) -> tuple[int, http.client.HTTPMessage, bytes]:
        for attempt in range(self.p.rate_limit_retries + 1):
            deadline = _Deadline(budget[0] - time.monotonic())
            with self.gate.slot(origin):
                status, headers, body = self._request(url, scheme, host, port, addr, deadline)
            if status not in (429, 503):
                return status, headers, body
            wait = _retry_after(headers.get("Retry-After"))
            if wait is None:
                wait = min(self.p.max_retry_after, 2.0 ** attempt)  # bounded backoff
            if attempt == self.p.rate_limit_retries or wait > self.p.max_retry_after:
                raise FetchRefused("rate_limited", f"HTTP {status} from {host} after "
                                   f"{attempt + 1} tries (Retry-After {headers.get('Retry-After')})")
            time.sleep(wait)
            budget[0] += wait
        raise AssertionError("unreachable")


# ---------------------------------------------------------------- inside img2dataset's workers

_FETCHERS: dict[FetchPolicy, Fetcher] = {}
_FETCHERS_LOCK = threading.Lock()


def fetcher_for(policy: FetchPolicy) -> Fetcher:
    with _FETCHERS_LOCK:
        f = _FETCHERS.get(policy)
        if f is None:
            f = _FETCHERS[policy] = Fetcher(policy)
        return f


def download_with_retry(row: tuple[int, str], timeout: Any = None, retries: int = 0,
                        user_agent_token: Any = None, disallowed_header_directives: Any = None,
                        *, policy: FetchPolicy) -> tuple[int, io.BytesIO | None, str | None]:
    """Stands in for ``img2dataset.downloader.download_image_with_retry``: the same arguments
    and result; ``retries`` repeats transient failures only (never a refusal)."""
    key, url = row
    fetcher = fetcher_for(policy)
    err = ""
    for _ in range(retries + 1):
        try:
            r = fetcher.fetch(url)
            directive = opt_out(r.headers, policy.ua_token, policy.opt_out_directives)
            if directive:
                return key, None, f"[opt_out] X-Robots-Tag {directive} on {r.url[:300]}"
            return key, io.BytesIO(r.body), None
        except FetchRefused as e:
            return key, None, str(e)
        except Exception as e:  # noqa: BLE001 - a network fault of any kind is this row's error
            err = str(e) or type(e).__name__
            if err.startswith("HTTP Error 4"):
                break  # a client error does not go away by asking again
    return key, None, err


class SafeDownloader:
    """Wraps img2dataset's ``Downloader`` (what its distributor pickles to the workers and
    calls once per shard): installs ``download_with_retry`` as the worker's per-row fetch,
    then runs the wrapped downloader unchanged."""

    def __init__(self, inner: Any, policy: FetchPolicy):
        self.inner, self.policy = inner, policy

    def __call__(self, row: Any) -> Any:
        import functools

        import img2dataset.downloader as i2d_downloader

        # the module global that Downloader.download_shard's thread pool calls per row
        i2d_downloader.download_image_with_retry = functools.partial(download_with_retry,
                                                                     policy=self.policy)
        return self.inner(row)


__all__ = ["FetchPolicy", "FetchRefused", "Fetcher", "SafeDownloader", "download_with_retry",
           "opt_out", "FILTERED_REASONS", "OPT_OUT_DIRECTIVES", "default_user_agent"]
