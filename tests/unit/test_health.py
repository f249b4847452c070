"""The operator's /readyz and /metrics endpoints, served for real on a loopback port."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from stratus import health
from tests.conftest import free_port


class Api:
    def __init__(self) -> None:
        self.reason: str | None = None
        self.calls = 0

    def check(self) -> str | None:
        self.calls += 1
        return self.reason


@pytest.fixture
def served() -> Iterator[tuple[str, health.Readiness, Api]]:
    api = Api()
    readiness = health.Readiness(api.check, ttl=0.0)
    port = free_port()
    server = health.serve(port, readiness)
    yield f"http://127.0.0.1:{port}", readiness, api
    server.shutdown()
    server.server_close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_not_ready_until_the_controllers_are_wired(
    served: tuple[str, health.Readiness, Api],
) -> None:
    base, readiness, api = served
    assert get(f"{base}/readyz") == (503, "controllers are not wired yet\n")
    assert api.calls == 0
    readiness.started = True
    assert get(f"{base}/readyz") == (200, "ok\n")


def test_unready_with_the_reason_while_the_api_server_does_not_answer(
    served: tuple[str, health.Readiness, Api],
) -> None:
    base, readiness, api = served
    readiness.started = True
    api.reason = "the API server does not answer: timed out"
    assert get(f"{base}/readyz") == (503, f"{api.reason}\n")
    api.reason = None
    assert get(f"{base}/readyz") == (200, "ok\n")


def test_metrics_are_served_beside_readiness(served: tuple[str, health.Readiness, Api]) -> None:
    status, body = get(f"{served[0]}/metrics")
    assert status == 200
    assert "python_info" in body or "process_" in body


def test_the_api_check_is_cached_for_its_ttl() -> None:
    api = Api()
    readiness = health.Readiness(api.check, ttl=60.0)
    readiness.started = True
    for _ in range(5):
        assert readiness.verdict() is None
    assert api.calls == 1
