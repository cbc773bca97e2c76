"""A real HTTP server on the loopback interface serving a directory, in a thread.

Used by tests, the demo and the benchmark to exercise the real download path offline.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator


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
                                                      if on_request else None})
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
