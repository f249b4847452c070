"""Canary analysis queries against Prometheus's HTTP API (instant queries).

A hostile or broken Prometheus must not wedge or exhaust the operator: an answer is read up to
MAX_BYTES, the whole request (connect, headers, body, however slowly it drips) ends by a
deadline, redirects are not followed, and every way it can go wrong is an inconclusive
measurement with a short one-line reason, never an exception."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import urllib.parse
from typing import Any

from stratus.api.inferenceservice import AnalysisMetric
from stratus.serving.verdict import Measurement, worst

MAX_BYTES = 1 << 20
DEADLINE = 10.0
# The most of an error that reaches the status and Events.
MESSAGE_CHARS = 200


class _Unanswered(Exception):
    """No measurement: the message says why."""


def render(query: str, variables: dict[str, str]) -> str:
    for key, value in variables.items():
        query = query.replace("{{" + key + "}}", value)
    return query


def measure(
    address: str,
    metric: AnalysisMetric,
    variables: dict[str, str],
    deadline: float = DEADLINE,
    max_bytes: int = MAX_BYTES,
) -> Measurement:
    """One instant query, judged on every series it returns (the worst one, see
    `verdict.worst`); no data at all, and every error, are inconclusive."""
    path = urllib.parse.urlsplit(address).path.rstrip("/")
    target = f"{path}/api/v1/query?" + urllib.parse.urlencode(
        {"query": render(metric.query, variables)}
    )
    try:
        values = _values(_get(address, target, deadline, max_bytes))
    except _Unanswered as exc:
        return Measurement(metric, None, one_line(str(exc)))
    return worst(metric, values)


def read(
    address: str, query: str, deadline: float = DEADLINE, max_bytes: int = MAX_BYTES
) -> tuple[tuple[float, ...] | None, str]:
    """Every series' value of one instant query; None and a one-line reason when it could not
    be read (idle reclamation's signals)."""
    path = urllib.parse.urlsplit(address).path.rstrip("/")
    target = f"{path}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        return tuple(_values(_get(address, target, deadline, max_bytes))), ""
    except _Unanswered as exc:
        return None, one_line(str(exc))


def one_line(text: str, limit: int = MESSAGE_CHARS) -> str:
    """Text from the network made safe for a status: printable, one line, bounded."""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _get(address: str, target: str, deadline: float, max_bytes: int) -> Any:
    """GET `target` from `address` and decode its JSON, within `deadline` seconds in all."""
    parts = urllib.parse.urlsplit(address)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname or "", parts.port, timeout=deadline)
    expired = threading.Event()
    held: list[socket.socket] = []

    def cut() -> None:
        # A socket timeout bounds each read, not the request: a server that sends a byte now
        # and then would hold this thread forever. Shutting the socket down ends any read.
        expired.set()
        for sock in (conn.sock, *held):
            if sock is not None:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    watchdog = threading.Timer(deadline, cut)
    watchdog.start()
    try:
        conn.connect()
        # getresponse() hands the socket to the response and forgets it: keep it to cut.
        held.append(conn.sock)
        if expired.is_set():
            raise _Unanswered(f"no answer within {deadline:g} s")
        conn.request("GET", target, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        if 300 <= resp.status < 400:
            raise _Unanswered(f"redirects are not followed (HTTP {resp.status})")
        status, body = resp.status, _read(resp, max_bytes)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if expired.is_set():
            raise _Unanswered(f"no answer within {deadline:g} s") from exc
        raise _Unanswered(f"query failed: {str(exc) or type(exc).__name__}") from exc
    finally:
        watchdog.cancel()
        conn.close()
    if expired.is_set():
        raise _Unanswered(f"no answer within {deadline:g} s")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        raise _Unanswered(f"query failed: HTTP {status}, not a Prometheus API answer")
    if doc.get("status") != "success":
        raise _Unanswered(f"query failed: {doc.get('error') or f'HTTP {status}'}")
    return doc.get("data")


def _read(resp: http.client.HTTPResponse, max_bytes: int) -> bytes:
    """The whole body, or an error once it is longer than `max_bytes`. A body shorter than its
    Content-Length raises IncompleteRead."""
    too_large = f"response larger than {max_bytes / (1 << 20):g} MiB"
    if resp.length is not None:
        if resp.length > max_bytes:
            raise _Unanswered(too_large)
        return resp.read()
    body = resp.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise _Unanswered(too_large)
    return body


def _values(data: Any) -> list[float]:
    """Every series' value in an instant query's result (a vector, or a scalar)."""
    try:
        if data["resultType"] == "scalar":
            return [float(data["result"][1])]
        if data["resultType"] == "vector":
            return [float(series["value"][1]) for series in data["result"]]
    except (KeyError, IndexError, TypeError, ValueError):
        pass
    raise _Unanswered("unexpected result: not one number per series")
