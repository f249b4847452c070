"""The shadow proxy: every user request goes to the primary (the stable revision) and its answer
goes back unchanged; a share of POST requests is copied, after the user has the answer, to the
candidate (and the baseline) and judged on a small bounded pool that drops copies rather than
queue without end. A candidate's answer never reaches a user."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import math
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from stratus.validation import client
from stratus.validation.client import Endpoint
from stratus.validation.compare import Answer
from stratus.validation.judge import Judge

log = logging.getLogger(__name__)

MAX_COPIED_BODY = 10 << 20  # larger requests are forwarded (streamed), never copied
PRIMARY_TIMEOUT_S = 300.0  # the user's own call: longer than a copy's, the model may be slow
CHUNK = 64 << 10
WORKERS = 4
QUEUE = 64
OVERHEAD_SAMPLES = 100_000
# RFC 9110 7.6.1, and what this proxy answers for itself (it reads and re-frames bodies).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "expect",
        "host",
    }
)
NO_BODY = frozenset({204, 304})


def end_to_end(headers: Message) -> list[tuple[str, str]]:
    """The headers to pass on: without hop-by-hop ones, nor those Connection names."""
    named = {
        token.strip().lower()
        for value in headers.get_all("Connection") or []
        for token in value.split(",")
    }
    return [
        (name, value)
        for name, value in headers.items()
        if name.lower() not in HOP_BY_HOP and name.lower() not in named
    ]


class Sampler:
    """Exactly floor(n * percent / 100) of the first n: spread evenly, no randomness."""

    def __init__(self, percent: int) -> None:
        self.percent = percent
        self._count = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            self._count += 1
            n = self._count
        return (n * self.percent) // 100 > ((n - 1) * self.percent) // 100


class Overhead:
    """Time in the proxy minus the upstream call, per request (the most recent ones)."""

    def __init__(self) -> None:
        self._seconds: deque[float] = deque(maxlen=OVERHEAD_SAMPLES)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._seconds.append(max(0.0, seconds))

    def percentiles_ms(self) -> dict[str, float]:
        with self._lock:
            ordered = sorted(self._seconds)
        if not ordered:
            return {}
        return {name: round(_rank(ordered, q) * 1000, 3) for name, q in (("p50", 50), ("p99", 99))}


def _rank(ordered: list[float], percent: int) -> float:
    """Nearest-rank percentile."""
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Copy:
    target: str  # path and query
    headers: dict[str, str]  # the user's end-to-end headers, but Content-Type
    body: bytes
    content_type: str
    primary: Answer


@dataclass(frozen=True)
class Upstreams:
    primary: str  # base URL of the stable revision
    candidate: str  # base URL of the candidate revision
    baseline: Endpoint | None = None  # an external baseline; None: the stable (primary)
    noise_floor: bool = True


class Copier:
    """Sends copies to the candidate and the baseline and judges them, on a few threads fed by
    a bounded queue: a copy that finds it full is skipped (and counted)."""

    def __init__(
        self,
        upstreams: Upstreams,
        judge: Judge,
        *,
        workers: int = WORKERS,
        size: int = QUEUE,
        judged: Callable[[], None] = lambda: None,
    ) -> None:
        self.upstreams = upstreams
        self.judge = judge
        self.judged = judged
        self._queue: queue.Queue[Copy | None] = queue.Queue(size)
        self._threads = [
            threading.Thread(target=self._work, name=f"shadow-copy-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def offer(self, copy: Copy) -> None:
        try:
            self._queue.put_nowait(copy)
        except queue.Full:
            self.judge.count(skipped=1)

    def stop(self, timeout: float = 5.0) -> None:
        """Drop the copies not yet started; let the ones under way finish (up to `timeout`)."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        while (copy := self._queue.get()) is not None:
            try:
                self._judge(copy)
            except Exception:
                log.exception("judging a shadow copy failed")
                self.judge.count(errors=1)

    def _judge(self, copy: Copy) -> None:
        up = self.upstreams

        def at(base: str) -> Endpoint:
            return Endpoint(base.rstrip("/") + copy.target)

        candidate, _ = client.post(
            at(up.candidate), copy.body, copy.content_type, headers=copy.headers
        )
        if up.baseline is not None:
            baseline, _ = client.post(up.baseline, copy.body, copy.content_type)
            again = (
                client.post(up.baseline, copy.body, copy.content_type)[0]
                if up.noise_floor
                else None
            )
        else:
            baseline = copy.primary
            again = (
                client.post(at(up.primary), copy.body, copy.content_type, headers=copy.headers)[0]
                if up.noise_floor
                else None
            )
        self.judge.judge(baseline, candidate, again)
        self.judge.count(requests=1)  # after the tally: who waits on the count sees it
        self.judged()


class ShadowProxy(ThreadingHTTPServer):
    """Serves users; stop with drain()."""

    daemon_threads = False  # drain: server_close() joins the requests in flight
    block_on_close = True

    def __init__(
        self,
        address: tuple[str, int],
        upstreams: Upstreams,
        copier: Copier,
        percent: int,
        *,
        idle_timeout: float = 5.0,
    ) -> None:
        self.upstreams = upstreams
        self.copier = copier
        self.sampler = Sampler(percent)
        self.overhead = Overhead()
        self.pool = client.Pool()
        self.primary_key = self.pool.key(upstreams.primary, None)
        self.idle_timeout = idle_timeout
        self.stopping = threading.Event()
        # Open user connections, and whether each is in a request (else idle, kept alive).
        self._busy: dict[socket.socket, bool] = {}
        self._lock = threading.Lock()
        super().__init__(address, ProxyHandler)

    def track(self, conn: socket.socket, busy: bool | None) -> None:
        """busy None: the connection is closed."""
        with self._lock:
            if busy is None:
                self._busy.pop(conn, None)
            else:
                self._busy[conn] = busy

    def drain(self) -> None:
        """Stop accepting, close idle kept-alive connections, finish the requests in flight
        (their answers close their connections), stop copying."""
        self.stopping.set()
        self.shutdown()
        with self._lock:
            idle = [conn for conn, busy in self._busy.items() if not busy]
        for conn in idle:
            with contextlib.suppress(OSError):  # closed by the user meanwhile
                conn.shutdown(socket.SHUT_RDWR)
        self.server_close()
        self.copier.stop()
        self.pool.close()


class BodyTooLarge(Exception):
    pass


class ProxyHandler(BaseHTTPRequestHandler):
    server: ShadowProxy
    protocol_version = "HTTP/1.1"
    server_version = "stratus-shadow/1"
    upstream_s = 0.0  # this request's time in calls to the primary

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.idle_timeout)
        # Headers and body go out in separate writes: no Nagle wait between them.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, busy=False)

    def parse_request(self) -> bool:
        self.server.track(self.connection, busy=True)
        return super().parse_request()

    def handle_one_request(self) -> None:
        super().handle_one_request()
        self.server.track(self.connection, busy=False)

    def finish(self) -> None:
        self.server.track(self.connection, busy=None)
        super().finish()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Not logged: the path's query may carry a user's secret."""

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s: %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._forward()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _forward(self) -> None:
        started = time.perf_counter()
        self.upstream_s = 0.0
        try:
            body = self._body()
        except BodyTooLarge:
            self.close_connection = True
            self._error(413, "a chunked body over 10 MiB")
            return
        except (OSError, ValueError):
            self.close_connection = True
            return
        headers = end_to_end(self.headers)
        sampled = (
            self.command == "POST"
            and not self.server.stopping.is_set()
            and self.server.sampler.take()
        )
        try:
            answer = self._relay(body, headers, keep=sampled and isinstance(body, bytes))
        finally:
            self.server.overhead.add(time.perf_counter() - started - self.upstream_s)
        if not sampled:
            return
        if answer is None or not isinstance(body, bytes):
            self.server.copier.judge.count(skipped=1)
            return
        self.server.copier.offer(
            Copy(
                target=self._target(),
                headers={k: v for k, v in headers if k.lower() != "content-type"},
                body=body,
                content_type=self.headers.get("Content-Type", "application/json"),
                primary=answer,
            )
        )

    def _target(self) -> str:
        return client.target(self.path) if "://" in self.path else self.path

    def _body(self) -> bytes | Iterator[bytes] | None:
        """The request's body: bytes up to 10 MiB, else a stream of it (never copied)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._dechunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > MAX_COPIED_BODY:
            return self._stream(length)
        if length == 0 and self.command not in ("POST", "PUT", "PATCH"):
            return None
        data = self.rfile.read(length)
        if len(data) < length:
            raise ValueError("the body ended early")
        return data

    def _stream(self, length: int) -> Iterator[bytes]:
        left = length
        while left > 0:
            piece = self.rfile.read(min(CHUNK, left))
            if not piece:
                raise ValueError("the body ended early")
            left -= len(piece)
            yield piece

    def _dechunked(self) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            chunk = int(line.split(b";", 1)[0].strip() or b"x", 16)
            if chunk == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers: dropped
                return b"".join(parts)
            size += chunk
            if size > MAX_COPIED_BODY:
                raise BodyTooLarge
            parts.append(self.rfile.read(chunk))
            self.rfile.readline(16)

    def _timed(self, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return call()
        finally:
            self.upstream_s += time.perf_counter() - started

    def _relay(
        self,
        body: bytes | Iterator[bytes] | None,
        headers: list[tuple[str, str]],
        *,
        keep: bool,
    ) -> Answer | None:
        """Sends the request to the primary and its answer to the user, unchanged; returns the
        answer (for a copy's comparison) when `keep` and it fits."""
        pool, key = self.server.pool, self.server.primary_key
        sent: dict[str, str] = {}
        for name, value in headers:
            sent[name] = f"{sent[name]}, {value}" if name in sent else value
        if isinstance(body, bytes):
            sent["Content-Length"] = str(len(body))
        elif body is not None:
            sent["Content-Length"] = self.headers["Content-Length"]
        for attempt in (1, 2):
            conn, reused = pool.take(key, PRIMARY_TIMEOUT_S)
            try:
                response = self._timed(partial(self._exchange, conn, body, sent))
                break
            except client.STALE:
                conn.close()
                if reused and attempt == 1 and not isinstance(body, Iterator):
                    continue
                self._error(502, "the model closed the connection")
                return None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                log.warning("primary: %s", client.transport_error("primary", exc))
                self._error(
                    504 if isinstance(exc, TimeoutError) else 502, "no answer from the model"
                )
                return None
        kept = self._answer(response, keep=keep)
        if response.will_close or not response.isclosed():
            conn.close()
            self.close_connection = self.close_connection or not response.isclosed()
        else:
            pool.give(key, conn)
        return kept

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        body: bytes | Iterator[bytes] | None,
        headers: dict[str, str],
    ) -> http.client.HTTPResponse:
        conn.request(self.command, self._target(), body, headers)
        return conn.getresponse()

    def _answer(self, response: http.client.HTTPResponse, *, keep: bool) -> Answer | None:
        self.send_response_only(response.status, response.reason)
        for name, value in end_to_end(response.msg):
            self.send_header(name, value)
        bodiless = self.command == "HEAD" or response.status in NO_BODY or response.status < 200
        length = response.getheader("Content-Length")
        if bodiless:
            if length is not None:
                self.send_header("Content-Length", length)
            self._end_headers()
            return Answer(response.status, None) if keep else None
        reframe = response.length is None and self.request_version == "HTTP/1.1"
        if reframe:
            self.send_header("Transfer-Encoding", "chunked")
        elif response.length is None:
            self.close_connection = True  # an HTTP/1.0 user: the end of the body is the close
        else:
            self.send_header("Content-Length", str(response.length))
        self._end_headers()
        data = self._pass_body(response, reframe=reframe, keep=keep)
        if data is None:
            return None
        return client.parse(response.status, data, response.getheader("Content-Type", ""))

    def _pass_body(
        self, response: http.client.HTTPResponse, *, reframe: bool, keep: bool
    ) -> bytes | None:
        """Streams the body to the user (in chunks of our own when `reframe`); returns it when
        `keep` and it fits MAX_ANSWER_BYTES."""
        kept: list[bytes] = []
        size = 0
        try:
            while piece := self._timed(partial(response.read1, CHUNK)):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if reframe else piece)
                size += len(piece)
                if keep and size <= client.MAX_ANSWER_BYTES:
                    kept.append(piece)
            self._timed(response.read)  # read1 leaves a Content-Length response open
            if reframe:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (OSError, http.client.HTTPException):
            self.close_connection = True
            return None
        if not keep or size > client.MAX_ANSWER_BYTES:
            return None
        return b"".join(kept)

    def _end_headers(self) -> None:
        if self.server.stopping.is_set():
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _error(self, status: int, message: str) -> None:
        body = json.dumps({"error": f"shadow proxy: {message}"}).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self._end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
