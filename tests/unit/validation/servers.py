"""Real HTTP servers on loopback ports for the validator's tests: the example model server
(examples/serve/server.py) as baseline and candidate, and small stubs for odd answers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.model_server import server as model_server

# Three classes over two features: x0 decides (low below -0.5, mid between, high above 0.5).
MODEL: dict[str, Any] = {
    "format": "stratus.dev/linear-classifier/v1",
    "classes": ["low", "mid", "high"],
    "coef": [[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]],
    "intercept": [0.0, 0.5, 0.0],
}


def base_url(httpd: ThreadingHTTPServer) -> str:
    host, port = httpd.server_address[:2]
    assert isinstance(host, str)
    return f"http://{host}:{port}"


@contextmanager
def serving(httpd: ThreadingHTTPServer) -> Iterator[str]:
    """Serves from a thread; yields the base URL; stops it after."""
    loop = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    loop.start()
    try:
        yield base_url(httpd)
    finally:
        httpd.shutdown()
        httpd.server_close()
        loop.join(timeout=10)


@contextmanager
def model(revision: str = "rev-a", *, flip: str = "0", fail: str = "0") -> Iterator[str]:
    """The example model server: deterministic, flipping a share of labels on purpose (FLIP_RATIO),
    or failing a share of requests (FAIL_RATIO)."""
    httpd = model_server.ModelServer(
        ("127.0.0.1", 0),
        model_server.LinearModel.from_dict(MODEL),
        revision=revision,
        failures=model_server.FailureInjector.parse(fail),
        quirks=model_server.Quirks.parse(flip, "0"),
    )
    httpd.stopping.set()  # every answer closes its connection: no idle keep-alive to wait for
    with serving(httpd) as url:
        yield url


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


# (the request) -> (status, headers, body); a body of None: no Content-Length, the body chunked.
Reply = Callable[[Seen], tuple[int, dict[str, str], bytes | None]]


@dataclass
class Stub:
    url: str
    seen: list[Seen] = field(default_factory=list)


def json_reply(status: int = 200, payload: Any = None) -> Reply:
    def reply(_: Seen) -> tuple[int, dict[str, str], bytes | None]:
        return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()

    return reply


@contextmanager
def stub(reply: Reply) -> Iterator[Stub]:
    """A server answering every request with `reply`, recording what it saw."""
    recorded = Stub("")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen = Seen(self.command, self.path, dict(self.headers), self.rfile.read(length))
            with lock:
                recorded.seen.append(seen)
            status, headers, body = reply(seen)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if body is None:
                self.send_header("Transfer-Encoding", "chunked")
            elif self.command != "HEAD":
                self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if body is None:
                for piece in (b"chunked ", b"body\n"):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            elif self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    with serving(httpd) as url:
        recorded.url = url
        yield recorded


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def instances(n: int) -> list[list[float]]:
    """n instances spread over the three classes."""
    return [[(i % 7) - 3.0, float(i)] for i in range(n)]


def write_requests(path: Path, count: int, *, expected: bool = False) -> Path:
    """A request set of `count` one-instance requests (with the model's answers when
    `expected`)."""
    linear = model_server.LinearModel.from_dict(MODEL)
    lines = []
    for x in instances(count):
        body = {"instances": [x]}
        if expected:
            lines.append(
                json.dumps({"request": body, "expected": {"predictions": linear.predict([x])}})
            )
        else:
            lines.append(json.dumps(body))
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `check` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
