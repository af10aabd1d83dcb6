"""``MonitorServer``: the monitor's HTTP endpoints, on the standard library's threading HTTP server.

Routes (GET and HEAD; POST is 405, other methods 501):

- ``/``: the page (``static/index.html``); ``/static/NAME`` and ``/static/vendor/NAME``: its assets,
  read from the installed package. A name is letters, digits, ``_ . -`` and may not start with a
  dot, so ``..`` and encoded variants of it are refused (404) before any file is looked up.
- ``/api/swarm``: the ``MonitorState`` snapshot as JSON (the page polls it).
- ``/metrics``: Prometheus text format.
- ``/healthz``: 200 ``{"status": "ok"}`` once telemetry has been read within ``health_after_s``,
  else 503 with ``"starting"`` or ``"stale"``.

Handlers only copy bytes the state cached at its last ingest, so a request never waits on the DHT.
"""

from __future__ import annotations

import functools
import http.server
import json
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from importlib import resources
from types import TracebackType
from typing import Self

from swarmnet.coordinator.monitor.state import MonitorState

__all__ = ["MonitorServer"]

logger = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}
_PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'",
    "Referrer-Policy": "no-referrer",
}


class _StaticFiles:
    """The package's ``static/`` folder, each file read once and kept in memory (it is small)."""

    def __init__(self) -> None:
        self._root = resources.files("swarmnet.coordinator.monitor").joinpath("static")
        self._cache: dict[str, bytes | None] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> bytes | None:
        """The file's bytes, or None for a missing file or a refused name."""
        segments = name.split("/")
        if len(segments) > 2 or not all(_SEGMENT.match(s) for s in segments):
            return None
        with self._lock:
            if name not in self._cache:
                node = self._root.joinpath(*segments)
                self._cache[name] = node.read_bytes() if node.is_file() else None
            return self._cache[name]


class MonitorServer:
    """Serves one ``MonitorState`` over HTTP from a background thread; ``port=0`` picks a free port."""

    def __init__(
        self,
        state: MonitorState,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        clock: Callable[[], float] = time.time,
        health_after_s: float = 30.0,
    ) -> None:
        self.state, self.clock, self.health_after_s = state, clock, health_after_s
        self._static = _StaticFiles()
        self._httpd = http.server.ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when asked for port 0)."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Where the page is, e.g. ``http://127.0.0.1:8080/``."""
        host = str(self._httpd.server_address[0])
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def start(self) -> None:
        """Start serving in a daemon thread."""
        serve = functools.partial(self._httpd.serve_forever, poll_interval=0.1)  # how soon close() returns
        self._thread = threading.Thread(target=serve, name="monitor-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port. Idempotent."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def health(self) -> tuple[int, bytes]:
        """The ``/healthz`` status code and body."""
        last = self.state.last_ingest()
        age = None if last is None else max(0.0, self.clock() - last)
        status = "starting" if age is None else "ok" if age <= self.health_after_s else "stale"
        body = json.dumps({"status": status, "last_read_age_s": None if age is None else round(age, 3)})
        return (200 if status == "ok" else 503), body.encode()

    def route(self, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for a GET of ``path`` (no query string)."""
        if path == "/api/swarm":
            return 200, "application/json", self.state.snapshot_json()
        if path == "/metrics":
            return 200, _PROMETHEUS_TYPE, self.state.metrics_text()
        if path == "/healthz":
            code, body = self.health()
            return code, "application/json", body
        name = "index.html" if path in ("/", "/index.html") else None
        if path.startswith("/static/"):
            name = path.removeprefix("/static/")
        if name is not None:
            asset = self._static.get(name)
            if asset is not None:
                suffix = name[name.rfind(".") :] if "." in name else ""
                return 200, _TYPES.get(suffix, "text/plain; charset=utf-8"), asset
        return 404, "text/plain; charset=utf-8", b"not found\n"

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            server_version = "swarmnet-monitor"
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def do_GET(self) -> None:
                self._answer(send_body=True)

            def do_HEAD(self) -> None:
                self._answer(send_body=False)

            def do_POST(self) -> None:  # read-only: other methods get the stdlib's 501
                self._send(405, "text/plain; charset=utf-8", b"method not allowed\n", send_body=True)

            def _answer(self, *, send_body: bool) -> None:
                try:
                    path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                    code, kind, body = server.route(path)
                except Exception:  # a bug in a route must not kill the server thread
                    logger.exception("error answering %s", self.path)
                    code, kind, body = 500, "text/plain; charset=utf-8", b"internal error\n"
                self._send(code, kind, body, send_body=send_body)

            def _send(self, code: int, kind: str, body: bytes, *, send_body: bool) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for name, value in _SECURITY_HEADERS.items():
                    self.send_header(name, value)
                self.end_headers()
                if send_body:
                    try:
                        self.wfile.write(body)
                    except ConnectionError:  # the browser went away mid-answer
                        logger.debug("client %s disconnected", self.address_string())

            def log_message(self, format: str, *args: object) -> None:
                logger.debug("%s %s", self.address_string(), format % args)

        return Handler
