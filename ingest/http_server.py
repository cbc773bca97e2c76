"""A real HTTP server on the loopback interface serving a directory, in a thread.

Used by tests, the demo and the benchmark to exercise the real download path offline.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import time
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator


class RequestLog:
    """The paths a server was asked for, from its handler threads (``on_request`` of
    ``serve_directory``); ``delay`` seconds slow each answer (a slow site, so that a test's
    kill lands mid-download)."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self._paths: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, path: str) -> None:
        with self._lock:
            self._paths.append(path)
        if self.delay:
            time.sleep(self.delay)

    def __len__(self) -> int:
        with self._lock:
            return len(self._paths)

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._paths))

    def clear(self) -> None:
        with self._lock:
            self._paths.clear()


class _QuietHandler(SimpleHTTPRequestHandler):
    on_request: Callable[[str], None] | None = None

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # keep test and demo output readable

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.on_request is not None:
            self.on_request(self.path)
        super().do_GET()


@contextlib.contextmanager
def serve_directory(path: str | Path, host: str = "127.0.0.1", port: int = 0,
                    on_request: Callable[[str], None] | None = None) -> Iterator[str]:
    """Serve ``path`` at ``http://host:port`` (port 0 picks a free one); yields the base URL
    (no trailing slash) and shuts the server down on exit. ``on_request(path)`` is called for
    every GET (tests count downloads with it)."""
    handler_cls = type("_Handler", (_QuietHandler,), {"on_request": staticmethod(on_request)
                                                      if on_request is not None else None})
    handler = functools.partial(handler_cls, directory=str(Path(path).resolve()))
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="ingest-http", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# a scripted response: (status, headers, body); a body may be an iterable of chunks (sent with
# a flush after each, for slow servers)
Reply = tuple[int, dict[str, str], bytes | Iterable[bytes]]


@contextlib.contextmanager
def serve_routes(routes: dict[str, Callable[[int], Reply]], host: str = "127.0.0.1",
                 log: list[tuple[float, str, str]] | None = None,
                 tls: Any = None) -> Iterator[str]:
    """A loopback server answering GET ``path`` with ``routes[path](n)`` (n: how many times
    that path was asked before), 404 for others. Every request is appended to ``log`` as
    ``(time.monotonic(), path, Host header)``. With ``tls`` (an ``ssl.SSLContext``) it
    serves https. Yields the base URL. (Tests of redirects, robots.txt, rate limits and slow
    bodies.)"""
    counts: dict[str, int] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802
            with lock:
                n = counts.get(self.path, 0)
                counts[self.path] = n + 1
                if log is not None:
                    log.append((time.monotonic(), self.path, self.headers.get("Host", "")))
            fn = routes.get(self.path)
            status, headers, body = fn(n) if fn else (404, {}, b"not found")
            chunks = [body] if isinstance(body, bytes) else body
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if isinstance(body, bytes):
                self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for c in chunks:
                    self.wfile.write(c)
                    self.wfile.flush()
            except OSError:
                pass  # the client gave up (a timeout test)
            self.close_connection = True

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="ingest-routes", daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls is not None else 'http'}://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
