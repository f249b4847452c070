"""The operator's HTTP endpoints on the metrics port: `/metrics` for Prometheus and `/readyz`,
which says whether this replica can do its work: its controllers are wired and the API server
answers it. Liveness stays with kopf's own `/healthz` on the health port, so an API server
outage makes the pod unready, never restarted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class Readiness:
    """Ready once `started` is set and the last API check (at most `ttl` seconds old)
    succeeded. `check` returns None when the API server answers, else the reason."""

    def __init__(self, check: Callable[[], str | None], ttl: float = 5.0) -> None:
        self.started = False
        self._check = check
        self._ttl = ttl
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._reason: str | None = "not checked yet"

    def verdict(self) -> str | None:
        """None when ready, else why not, in one line."""
        if not self.started:
            return "controllers are not wired yet"
        with self._lock:
            if time.monotonic() - self._checked_at > self._ttl:
                self._reason = self._check()
                self._checked_at = time.monotonic()
            return self._reason


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


def app(readiness: Readiness) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    metrics = make_wsgi_app()

    def route(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/readyz":
            reason = readiness.verdict()
            status = "200 OK" if reason is None else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [(reason or "ok").encode() + b"\n"]
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    return route


def serve(port: int, readiness: Readiness) -> WSGIServer:
    """Serve both endpoints from a daemon thread, on every address (the pod's port)."""
    server = make_server("", port, app(readiness), handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
