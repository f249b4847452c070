"""The dashboard's HTTP server (standard library): the page, its JSON endpoints, a stream of
Server-Sent Events, and the rollout commands.

Bound to 127.0.0.1 by default. Every request must name this server in Host (a page from another
site that rebinds its DNS name to loopback is refused); a command must also come from this
server's page: an Origin equal to the Host, JSON, and the per-process token the page carries."""

from __future__ import annotations

import http.server
import json
import logging
import queue
import secrets
import sys
import time
import urllib.parse
import webbrowser
from collections.abc import Callable
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Any

from stratus.dashboard import rows, serving, timeline
from stratus.dashboard.live import CLOSED, Live
from stratus.dashboard.source import COMPONENT, KubeSource, Source, SourceError
from stratus.serving import labels

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
SYNC_WAIT_SECONDS = 5.0
MAX_BODY = 4096
STATIC = {
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}
COMMANDS = {
    "promote": (labels.PROMOTE_ANNOTATION, "PromoteRequested"),
    "promote-full": (labels.PROMOTE_FULL_ANNOTATION, "PromoteFullRequested"),
    "abort": (labels.ABORT_ANNOTATION, "AbortRequested"),
    "retry": (labels.RETRY_ANNOTATION, "RetryRequested"),
}
PAGE_PATHS = ("/", "/trainingjobs/", "/inferenceservices/")
KIND_PATHS = {"trainingjobs": "TrainingJob", "inferenceservices": "InferenceService"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _static(name: str) -> bytes:
    return (resources.files("stratus.dashboard") / "static" / name).read_bytes()


class Dashboard:
    """What the handler serves: the live view, the assets, the token, who may call."""

    def __init__(self, live: Live, token: str | None = None) -> None:
        self.live = live
        self.token = token or secrets.token_urlsafe(32)
        self.assets = {path: (_static(name), kind) for path, (name, kind) in STATIC.items()}
        self.page = _static("index.html").replace(b"{{TOKEN}}", self.token.encode())
        self.hosts: frozenset[str] | None = frozenset()

    def bind(self, host: str, port: int) -> None:
        """Which Host headers name this server: any when it listens on every address."""
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - checked, not bound to
            self.hosts = None
            return
        names = {host, "localhost", "127.0.0.1", "[::1]", f"[{host}]"}
        self.hosts = frozenset(f"{name}:{port}" for name in names)

    def host_allowed(self, value: str | None) -> bool:
        return value is not None and (self.hosts is None or value in self.hosts)

    # -- the JSON views ----------------------------------------------------------------------
    def resources(self, query: dict[str, str]) -> dict[str, Any]:
        self.live.wait_synced(SYNC_WAIT_SECONDS)
        found = [rows.resource_row(o) for o in self.live.objects()]
        found = sorted((r for r in found if rows.matches(r, query)), key=_order)
        return {
            "items": found,
            "namespace": self.live.namespace,
            "errors": dict(self.live.errors),
        }

    def trainingjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.live.get("TrainingJob", namespace, name)
        if obj is None:
            return None
        events = self.live.source.events(namespace, obj["metadata"]["uid"])
        warnings = []
        try:
            pods, scheduled = self.live.source.pods(namespace, name)
        except SourceError as exc:
            pods, scheduled = [], []
            warnings.append(f"pods not shown: {exc.message}")
        seen = self.live.history.get(("TrainingJob", namespace, name))["checkpoints"]
        found = timeline.view(obj, [*events, *scheduled], pods, seen, self.live.clock())
        found["warnings"] = warnings
        return found

    def inferenceservice(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.live.get("InferenceService", namespace, name)
        if obj is None:
            return None
        events = self.live.source.events(namespace, obj["metadata"]["uid"])
        history = self.live.history.get(("InferenceService", namespace, name))
        found = serving.view(obj, events, history, self.live.clock())
        found["warnings"] = []
        return found

    def command(self, namespace: str, name: str, command: str) -> dict[str, Any]:
        """The annotation `stratus promote|abort|retry` writes, and an Event saying who asked."""
        annotation, reason = COMMANDS[command]
        obj = self.live.source.annotate(
            "InferenceService", namespace, name, {annotation: str(time.time_ns())}
        )
        obj.setdefault("kind", "InferenceService")
        user = self.live.source.user()
        message = f"{command} requested by {user} from the Stratus dashboard ({COMPONENT})"
        try:
            self.live.source.record_event(obj, reason, message)
        except SourceError as exc:
            return {"ok": True, "message": message, "event": False, "warning": exc.message}
        return {"ok": True, "message": message, "event": True}


def _order(row: dict[str, Any]) -> tuple[str, str, str]:
    return (row["namespace"], row["kind"], row["name"])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "stratus-dashboard"
    sys_version = ""
    dashboard: Dashboard

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # -- answers -------------------------------------------------------------------------------
    def _send(
        self, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for key, value in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    # -- requests ------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if not self.dashboard.host_allowed(self.headers.get("Host")):
            self._error(HTTPStatus.MISDIRECTED_REQUEST, "this server does not answer to that Host")
            return
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        try:
            if path == "/favicon.ico":
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            elif path == "/api/stream":
                self._stream()
            elif path in STATIC:
                body, kind = self.dashboard.assets[path]
                self._send(HTTPStatus.OK, body, kind, {"Cache-Control": "no-cache"})
            elif path == "/api/resources":
                query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
                self._json(HTTPStatus.OK, self.dashboard.resources(query))
            elif path.startswith("/api/"):
                self._detail(path.removeprefix("/api/"))
            elif path == "/" or _page(path):
                self._send(HTTPStatus.OK, self.dashboard.page, "text/html; charset=utf-8")
            else:
                self._error(HTTPStatus.NOT_FOUND, "not found")
        except SourceError as exc:
            self._error(exc.status if 400 <= exc.status < 600 else 502, exc.message)

    do_HEAD = do_GET

    def _detail(self, rest: str) -> None:
        parts = rest.split("/")
        if len(parts) != 3 or parts[0] not in KIND_PATHS:
            self._error(HTTPStatus.NOT_FOUND, "not found")
            return
        plural, namespace, name = parts
        view: Callable[[str, str], dict[str, Any] | None] = (
            self.dashboard.trainingjob
            if plural == "trainingjobs"
            else self.dashboard.inferenceservice
        )
        found = view(namespace, name)
        if found is None:
            self._error(HTTPStatus.NOT_FOUND, f"{KIND_PATHS[plural]} {namespace}/{name} not found")
        else:
            self._json(HTTPStatus.OK, found)

    def do_POST(self) -> None:
        refusal = self._refusal()
        if refusal:
            self._error(HTTPStatus.FORBIDDEN, refusal)
            return
        parts = urllib.parse.urlsplit(self.path).path.split("/")
        # /api/inferenceservices/<namespace>/<name>/<command>
        if (
            len(parts) != 6
            or parts[:3] != ["", "api", "inferenceservices"]
            or parts[5] not in COMMANDS
        ):
            self._error(HTTPStatus.NOT_FOUND, "not found")
            return
        try:
            self._json(HTTPStatus.OK, self.dashboard.command(parts[3], parts[4], parts[5]))
        except SourceError as exc:
            self._error(exc.status if 400 <= exc.status < 600 else 502, exc.message)

    def _refusal(self) -> str | None:
        """Why a command is refused: only this server's own page may give one."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            return "body too large"
        self.rfile.read(length)
        host = self.headers.get("Host")
        given = (self.headers.get("X-Stratus-Token") or "").encode()
        checks = (
            (self.dashboard.host_allowed(host), "this server does not answer to that Host"),
            (
                self.headers.get("Origin") == f"http://{host}",
                "cross-site request refused: Origin must be this server",
            ),
            (
                self.headers.get("Sec-Fetch-Site") in (None, "same-origin"),
                "cross-site request refused",
            ),
            (
                (self.headers.get("Content-Type") or "").startswith("application/json"),
                "commands are JSON requests",
            ),
            (
                secrets.compare_digest(given, self.dashboard.token.encode()),
                "missing or wrong token: reload the page",
            ),
        )
        return next((why for ok, why in checks if not ok), None)

    def _stream(self) -> None:
        """Server-Sent Events: each change the watches see, until the page goes away."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        self.close_connection = True
        broker = self.dashboard.live.broker
        inbox = broker.subscribe()
        try:
            self.wfile.write(b"retry: 2000\n\n")
            self.wfile.flush()
            while True:
                try:
                    message = inbox.get(timeout=KEEPALIVE_SECONDS)
                except queue.Empty:
                    self.wfile.write(b": keep-alive\n\n")
                else:
                    if message is CLOSED:
                        return
                    self.wfile.write(f"data: {json.dumps(message)}\n\n".encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            broker.unsubscribe(inbox)


def _page(path: str) -> bool:
    parts = path.split("/")
    return len(parts) == 4 and parts[1] in KIND_PATHS and all(parts[2:])


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


def make_server(dashboard: Dashboard, host: str, port: int) -> Server:
    handler = type("BoundHandler", (Handler,), {"dashboard": dashboard})
    server = Server((host, port), handler)
    dashboard.bind(host, server.server_address[1])
    return server


def serve(
    host: str, port: int, kubeconfig: Path | None, namespace: str | None, open_browser: bool
) -> int:
    """Run the dashboard until interrupted; 0 then, 1 when it cannot start."""
    try:
        source: Source = KubeSource(kubeconfig)
    except Exception as exc:  # noqa: BLE001 - any unreadable kubeconfig: one line, not a traceback
        print(f"stratus dashboard: cannot load the kubeconfig: {exc}", file=sys.stderr)
        return 1
    live = Live(source, namespace)
    dashboard = Dashboard(live)
    try:
        server = make_server(dashboard, host, port)
    except OSError as exc:
        print(f"stratus dashboard: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    live.start()
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{server.server_address[1]}/"
    print(f"Stratus dashboard on {url} (Ctrl-C stops it)", flush=True)
    if open_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        live.stop()
        server.server_close()
    return 0
