"""A real HTTP server on the loopback interface serving a directory, in a thread.

Used by tests, the demo and the benchmark to exercise the real download path offline.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # keep test and demo output readable


@contextlib.contextmanager
def serve_directory(path: str | Path, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``path`` at ``http://host:port`` (port 0 picks a free one); yields the base URL
    (no trailing slash) and shuts the server down on exit."""
    handler = functools.partial(_QuietHandler, directory=str(Path(path).resolve()))
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
