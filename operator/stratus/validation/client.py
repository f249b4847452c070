"""HTTP to the models and hooks the validator compares: keep-alive connections, bounded reads,
credentials that never reach a log, report or error message."""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from stratus.validation.compare import Answer, Hook

TIMEOUT_S = 10.0
# An answer larger than this is not compared (it is cut, and the cut answer disagrees).
MAX_ANSWER_BYTES = 10 << 20
MAX_IDLE_PER_HOST = 32
# A kept-alive connection the server closed in the meantime fails like this before any answer.
STALE = (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionResetError,
         BrokenPipeError)  # fmt: skip
TOKEN_ENV = "STRATUS_BASELINE_TOKEN"  # noqa: S105 - the name of a variable
USERNAME_ENV = "STRATUS_BASELINE_USERNAME"
PASSWORD_ENV = "STRATUS_BASELINE_PASSWORD"  # noqa: S105 - the name of a variable
CA_ENV = "STRATUS_BASELINE_CA"


class HookError(Exception):
    """A hook comparator's service gave no verdict; the sample is counted as an error."""


@dataclass(frozen=True)
class Endpoint:
    """A model's prediction URL. headers may hold credentials: they stay out of repr."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    ca_file: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{safe_url(self.url)}: not an http:// or https:// URL")

    def __str__(self) -> str:
        return safe_url(self.url)

    def __repr__(self) -> str:
        return f"Endpoint({safe_url(self.url)!r})"


def safe_url(url: str) -> str:
    """The URL without user info or query (either may carry a secret), for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def credentials(env: Mapping[str, str]) -> dict[str, str]:
    """The external baseline's Authorization header from the environment (none without)."""
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = env.get(USERNAME_ENV, ""), env.get(PASSWORD_ENV, "")
    if user:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}


def baseline_endpoint(url: str, env: Mapping[str, str] = os.environ) -> Endpoint:
    """An external baseline: its credentials and CA from the environment."""
    return Endpoint(url, credentials(env), env.get(CA_ENV) or None)


Key = tuple[str, str, int, str | None]


class Pool:
    """Idle keep-alive connections per host, shared by every thread (a thread takes one,
    uses it for one exchange and gives it back)."""

    def __init__(self) -> None:
        self._idle: dict[Key, list[http.client.HTTPConnection]] = {}
        self._contexts: dict[str | None, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def key(self, url: str, ca_file: str | None) -> Key:
        parts = urlsplit(url)
        default = 443 if parts.scheme == "https" else 80
        return parts.scheme, parts.hostname or "", parts.port or default, ca_file

    def take(self, key: Key, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        """A connection to `key`, and whether it was used before (and so may be stale)."""
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                conn = idle.pop()
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                return conn, True
        scheme, host, port, ca_file = key
        if scheme == "https":
            return http.client.HTTPSConnection(
                host, port, timeout=timeout, context=self._context(ca_file)
            ), False
        return http.client.HTTPConnection(host, port, timeout=timeout), False

    def give(self, key: Key, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < MAX_IDLE_PER_HOST:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()

    def _context(self, ca_file: str | None) -> ssl.SSLContext:
        with self._lock:
            if ca_file not in self._contexts:
                self._contexts[ca_file] = ssl.create_default_context(cafile=ca_file)
            return self._contexts[ca_file]


POOL = Pool()


def target(url: str) -> str:
    """The request target (path and query) of a URL."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def parse(status: int, data: bytes, content_type: str) -> Answer:
    """An answer's body: parsed JSON, else the text."""
    text = data.decode("utf-8", errors="replace")
    if "json" in content_type or text.lstrip()[:1] in ("{", "["):
        try:
            return Answer(status, json.loads(text))
        except ValueError:
            pass
    return Answer(status, text)


def transport_error(endpoint: Endpoint | str, exc: BaseException) -> str:
    """One line naming the endpoint and the failure, never a header."""
    name = type(exc).__name__
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{endpoint}: {name}" + (f": {text}" if text else "")


def post(
    endpoint: Endpoint,
    body: bytes,
    content_type: str = "application/json",
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT_S,
    pool: Pool = POOL,
) -> tuple[Answer, float]:
    """POST `body` to the endpoint: its answer (status 0 and a one-line error on a transport
    failure) and the seconds it took."""
    started = time.perf_counter()
    sent = {**(headers or {}), "Content-Type": content_type, **endpoint.headers}
    key = pool.key(endpoint.url, endpoint.ca_file)
    path = target(endpoint.url)
    for attempt in (1, 2):
        conn, reused = pool.take(key, timeout)
        try:
            conn.request("POST", path, body=body, headers=sent)
            response = conn.getresponse()
            data = response.read(MAX_ANSWER_BYTES + 1)
        except STALE as exc:
            conn.close()
            if reused and attempt == 1:
                continue
            return Answer(0, None, transport_error(endpoint, exc)), time.perf_counter() - started
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            return Answer(0, None, transport_error(endpoint, exc)), time.perf_counter() - started
        if len(data) > MAX_ANSWER_BYTES or response.will_close or not response.isclosed():
            conn.close()
        else:
            pool.give(key, conn)
        answer = parse(response.status, data, response.getheader("Content-Type", ""))
        return answer, time.perf_counter() - started
    raise AssertionError("unreachable")  # pragma: no cover


def hook(url: str, *, pool: Pool = POOL) -> Hook:
    """A hook comparator's judge: POSTs {"baseline": ..., "candidate": ...} to `url`, which
    answers {"agree": true|false} or {"score": x}."""
    endpoint = Endpoint(url)

    def judge(baseline: Any, candidate: Any) -> bool | float:
        body = json.dumps({"baseline": baseline, "candidate": candidate}).encode()
        answer, _ = post(endpoint, body, pool=pool)
        if answer.status == 0:
            raise HookError(answer.error)
        if not 200 <= answer.status < 300:
            raise HookError(f"{endpoint}: HTTP {answer.status}")
        verdict = answer.body
        if isinstance(verdict, dict):
            agree, score = verdict.get("agree"), verdict.get("score")
            if isinstance(agree, bool):
                return agree
            if isinstance(score, int | float) and not isinstance(score, bool):
                return float(score)
        raise HookError(f'{endpoint}: the answer is not {{"agree": bool}} or {{"score": number}}')

    return judge
