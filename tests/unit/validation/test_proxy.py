"""The shadow proxy on loopback, in front of real servers: users get exactly the primary's
answers (status, headers that matter, body) while copies reach the candidate after the answer;
sampling is exact, a full queue skips copies without delaying anyone, bodies up to 10 MiB are
copied and larger ones only forwarded, and a drain finishes what is in flight."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest

from stratus.api.validation import Comparator
from stratus.validation import client
from stratus.validation.judge import Judge
from stratus.validation.proxy import MAX_COPIED_BODY, Copier, Sampler, ShadowProxy, Upstreams
from tests.unit.validation.servers import Seen, json_reply, model, stub, wait_for

EXACT = Comparator(name="exact", type="exact", fields=["predictions"])
BODY = b'{"instances": [[1.0, 0.0]]}'


@contextmanager
def shadow(
    primary: str,
    candidate: str,
    *,
    percent: int = 100,
    workers: int = 2,
    size: int = 16,
    baseline: client.Endpoint | None = None,
    noise_floor: bool = False,
) -> Iterator[tuple[str, ShadowProxy, Judge]]:
    judge = Judge("shadow", [EXACT], 0.99)
    upstreams = Upstreams(primary, candidate, baseline, noise_floor)
    copier = Copier(upstreams, judge, workers=workers, size=size)
    proxy = ShadowProxy(("127.0.0.1", 0), upstreams, copier, percent, idle_timeout=1.0)
    with serving_proxy(proxy) as url:
        yield url, proxy, judge


@contextmanager
def serving_proxy(proxy: ShadowProxy) -> Iterator[str]:
    loop = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05})
    loop.start()
    host, port = proxy.server_address[:2]
    assert isinstance(host, str)
    try:
        yield f"http://{host}:{port}"
    finally:
        if not proxy.stopping.is_set():
            proxy.drain()
        loop.join(timeout=10)


def call(
    url: str,
    path: str = "/predict",
    body: bytes | None = BODY,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request(method, path, body, {"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.msg, response.read()
    finally:
        conn.close()


def test_users_get_the_primary_answer_and_copies_reach_the_candidate() -> None:
    with (
        model("rev-a") as primary,
        model("rev-b", flip="1/2") as candidate,
        shadow(primary, candidate) as (url, proxy, judge),
    ):
        for i in range(20):
            body = json.dumps({"instances": [[float(i % 5 - 2), 0.0]]}).encode()
            status, headers, answer = call(url, body=body)
            assert (status, headers["X-Revision"]) == (200, "rev-a")
            assert answer == call(primary, body=body)[2]  # byte for byte
        wait_for(lambda: judge.requests == 20)
        tally = judge.tallies["exact"]
        assert (tally.compared, tally.agreed) == (20, 10)
        overhead = proxy.overhead.percentiles_ms()
    assert set(overhead) == {"p50", "p99"}
    assert 0 <= overhead["p50"] <= overhead["p99"] < 100


def test_a_share_of_posts_is_copied_exactly_with_path_and_query() -> None:
    reply = json_reply(200, {"predictions": [1]})
    with (
        stub(reply) as primary,
        stub(reply) as candidate,
        shadow(primary.url, candidate.url, percent=25) as (url, _, judge),
    ):
        for _ in range(5):
            assert call(url, "/healthz", None, method="GET")[0] == 200
        for i in range(40):
            assert call(url, f"/v1/predict?i={i}")[0] == 200
        wait_for(lambda: judge.requests == 10)
        time.sleep(0.05)
    assert len(candidate.seen) == 10
    assert {s.method for s in candidate.seen} == {"POST"}
    assert [s.path for s in candidate.seen] == [f"/v1/predict?i={i}" for i in range(3, 40, 4)]
    assert all(s.body == BODY for s in candidate.seen)
    assert len(primary.seen) == 45
    assert judge.tallies["exact"].agreed == 10


def test_sampling_is_exact_and_spread() -> None:
    sampler = Sampler(30)
    taken = [sampler.take() for _ in range(100)]
    assert sum(taken) == 30
    assert sum(taken[:10]) == 3


def test_a_full_queue_skips_copies_without_delaying_users() -> None:
    release = threading.Event()

    def slow(_: Seen) -> tuple[int, dict[str, str], bytes]:
        release.wait(10)
        return 200, {"Content-Type": "application/json"}, b'{"predictions": [1]}'

    with (
        stub(json_reply(200, {"predictions": [1]})) as primary,
        stub(slow) as candidate,
        shadow(primary.url, candidate.url, workers=1, size=1) as (url, _, judge),
    ):
        try:
            call(url)
            wait_for(lambda: len(candidate.seen) == 1)  # the one worker is stuck on it
            for _ in range(5):
                started = time.monotonic()
                assert call(url)[0] == 200
                assert time.monotonic() - started < 1.0
            # One copy waits in the queue, the rest are dropped (counted once each answer is out).
            wait_for(lambda: judge.skipped == 4)
        finally:
            release.set()
        wait_for(lambda: judge.requests == 2)
        assert judge.skipped == 4


def test_hop_by_hop_headers_stop_at_the_proxy() -> None:
    def answer(_: Seen) -> tuple[int, dict[str, str], bytes]:
        return (
            200,
            {
                "Content-Type": "application/json",
                "X-Model": "a",
                "Keep-Alive": "timeout=5",
                "Proxy-Authenticate": "Basic",
                "Upgrade": "h2c",
            },
            b'{"predictions": [1]}',
        )

    sent = {
        "Connection": "X-Hop",
        "X-Hop": "1",
        "TE": "trailers",
        "Proxy-Authorization": "Basic eA==",
        "X-User": "u",
    }
    with (
        stub(answer) as primary,
        stub(answer) as candidate,
        shadow(primary.url, candidate.url) as (url, _, judge),
    ):
        status, headers, _ = call(url, headers=sent)
        wait_for(lambda: judge.requests == 1)
    assert status == 200
    assert headers["X-Model"] == "a"
    for name in ("Keep-Alive", "Proxy-Authenticate", "Upgrade"):
        assert name not in headers
    for seen in (primary.seen[0], candidate.seen[0]):
        assert seen.headers["X-User"] == "u"
        for name in ("X-Hop", "TE", "Proxy-Authorization"):
            assert name not in seen.headers


@pytest.mark.parametrize(
    ("status", "body"),
    [(418, b"teapot \x00\xff not json"), (500, b'{"error": "boom"}'), (200, None)],
)
def test_status_and_body_pass_unchanged(status: int, body: bytes | None) -> None:
    def answer(_: Seen) -> tuple[int, dict[str, str], bytes | None]:
        return status, {"Content-Type": "application/octet-stream"}, body

    with (
        stub(answer) as primary,
        stub(answer) as candidate,
        shadow(primary.url, candidate.url) as (url, _, judge),
    ):
        got = call(url)
        wait_for(lambda: judge.requests == 1)
    assert got[0] == status
    assert got[2] == (b"chunked body\n" if body is None else body)
    assert judge.tallies["exact"].agreed == 1  # the same answer on both sides


def test_bodies_up_to_10_mib_are_copied_and_larger_ones_only_forwarded() -> None:
    def size(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json"}, json.dumps(len(seen.body)).encode()

    with (
        stub(size) as primary,
        stub(size) as candidate,
        shadow(primary.url, candidate.url) as (url, _, judge),
    ):
        assert call(url, body=b"x" * MAX_COPIED_BODY)[2] == str(MAX_COPIED_BODY).encode()
        assert call(url, body=b"y" * (MAX_COPIED_BODY + 1))[2] == b"10485761"
        wait_for(lambda: judge.requests == 1 and judge.skipped == 1)
    assert [len(s.body) for s in primary.seen] == [MAX_COPIED_BODY, MAX_COPIED_BODY + 1]
    assert [len(s.body) for s in candidate.seen] == [MAX_COPIED_BODY]


def test_an_unreachable_primary_is_a_502_and_nothing_is_copied() -> None:
    with (
        stub(json_reply(200, {})) as candidate,
        shadow("http://127.0.0.1:9", candidate.url) as (url, _, judge),
    ):
        status, _, body = call(url)
        wait_for(lambda: judge.skipped == 1)
    assert status == 502
    assert "shadow proxy" in json.loads(body)["error"]
    assert candidate.seen == []


def test_an_external_baseline_gets_its_credentials_not_the_users_headers() -> None:
    token = "t0ken"
    reply = json_reply(200, {"predictions": [1]})
    with stub(reply) as primary, stub(reply) as candidate, stub(reply) as external:
        baseline = client.baseline_endpoint(external.url + "/m:predict", {client.TOKEN_ENV: token})
        with shadow(primary.url, candidate.url, baseline=baseline, noise_floor=True) as (
            url,
            _,
            judge,
        ):
            call(url, headers={"X-User": "u"})
            wait_for(lambda: judge.requests == 1)
    assert len(external.seen) == 2  # the baseline, asked twice for the noise floor
    assert all(s.headers["Authorization"] == f"Bearer {token}" for s in external.seen)
    assert all("X-User" not in s.headers for s in external.seen)
    assert "Authorization" not in candidate.seen[0].headers
    assert judge.tallies["exact"].noise_compared == 1


def test_the_stable_is_asked_again_for_the_noise_floor() -> None:
    reply = json_reply(200, {"predictions": [1]})
    with (
        stub(reply) as primary,
        stub(reply) as candidate,
        shadow(primary.url, candidate.url, noise_floor=True) as (url, _, judge),
    ):
        call(url)
        wait_for(lambda: judge.requests == 1)
    assert len(primary.seen) == 2
    assert judge.tallies["exact"].noise_compared == 1


def test_a_drain_finishes_requests_in_flight_and_stops_accepting() -> None:
    def slow(_: Seen) -> tuple[int, dict[str, str], bytes]:
        time.sleep(0.4)
        return 200, {"Content-Type": "application/json"}, b'{"predictions": [2]}'

    results: list[Any] = []
    with (
        stub(slow) as primary,
        stub(slow) as candidate,
        shadow(primary.url, candidate.url) as (url, proxy, _),
    ):
        user = threading.Thread(target=lambda: results.append(call(url)))
        user.start()
        wait_for(lambda: len(primary.seen) == 1)
        proxy.drain()
        user.join(5)
        with pytest.raises(ConnectionRefusedError):
            call(url)
    assert results[0][0] == 200
    assert results[0][2] == b'{"predictions": [2]}'


def test_a_user_connection_is_kept_alive_across_requests() -> None:
    with (
        model("rev-a") as primary,
        stub(json_reply(200, {})) as candidate,
        shadow(primary, candidate.url, percent=1) as (url, _, _judge),
    ):
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
        for _ in range(3):
            conn.request("POST", "/predict", BODY, {"Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200
            assert not response.will_close
            response.read()
        conn.close()


def test_a_drain_closes_idle_kept_alive_connections_at_once() -> None:
    reply = json_reply(200, {"predictions": [1]})
    with stub(reply) as primary, stub(reply) as candidate:
        judge = Judge("shadow", [EXACT], 0.99)
        upstreams = Upstreams(primary.url, candidate.url)
        proxy = ShadowProxy(("127.0.0.1", 0), upstreams, Copier(upstreams, judge), 100)
        with serving_proxy(proxy) as url:
            parts = urlsplit(url)
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)

            def post() -> bytes:
                conn.request("POST", "/predict", BODY, {"Content-Type": "application/json"})
                return conn.getresponse().read()

            assert post() == b'{"predictions": [1]}'
            started = time.monotonic()
            proxy.drain()  # the idle timeout is 5 s: not waited for
            assert time.monotonic() - started < 2.0
            with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
                post()
            conn.close()
