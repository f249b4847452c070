"""The validator pod's `run` and `relay` against real model servers on loopback: replay alone,
replay then shadow (ready only while proxying, the report written once decided, then proxying
on until stopped), the timeout, a bad configuration or request set (exit 1, a Failed report
that names it), and the relay of the report file."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from stratus.validation import run
from tests.unit.validation.servers import free_port, model, wait_for, write_requests

REPO = Path(__file__).resolve().parents[3]
LABELS = {"name": "labels", "type": "label", "fields": ["predictions"]}


def environment(
    tmp_path: Path, candidate: str, stable: str, validation: dict[str, Any]
) -> dict[str, str]:
    return {
        "STRATUS_VALIDATION": json.dumps(validation),
        "STRATUS_CANDIDATE_URL": candidate,
        "STRATUS_STABLE_URL": stable,
        "STRATUS_REQUESTS": str(write_requests(tmp_path / "requests.jsonl", 30)),
        "STRATUS_LISTEN_PORT": str(free_port()),
        "STRATUS_ADMIN_PORT": str(free_port()),
        "STRATUS_REPORT": str(tmp_path / "out" / "report.json"),
    }


def report(env: dict[str, str]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(Path(env["STRATUS_REPORT"]).read_text())
    return document


def get(port: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=5)
    try:
        conn.request("POST" if body else "GET", path, body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@contextmanager
def running(env: dict[str, str]) -> Iterator[tuple[threading.Event, list[int]]]:
    stop = threading.Event()
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(run.run(env, stop, host="127.0.0.1")))
    thread.start()
    try:
        yield stop, code
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_replay_alone_writes_the_report_and_exits(tmp_path: Path) -> None:
    validation = {"replay": {"configMap": {"name": "r", "key": "k"}}, "comparators": [LABELS]}
    with model("a") as stable, model("b", flip="1/10") as candidate:
        env = environment(tmp_path, candidate, stable, validation)
        assert run.run(env, threading.Event(), host="127.0.0.1") == 0
    written = report(env)
    assert written["verdict"] == "Failed"
    assert written["requests"] == {"replay": 30}
    assert written["results"][0]["samples"] == 30
    assert written["results"][0]["agreement"] == 0.9
    assert "labels" in written["reason"]
    assert written["examples"][0]["line"] >= 1


def test_replay_then_shadow_decides_while_proxying_until_stopped(tmp_path: Path) -> None:
    validation = {
        "replay": {"configMap": {"name": "r", "key": "k"}},
        "shadow": {"samples": 10},
        "comparators": [LABELS],
    }
    with model("a") as stable, model("b") as candidate:
        env = environment(tmp_path, candidate, stable, validation)
        admin, listen = env["STRATUS_ADMIN_PORT"], env["STRATUS_LISTEN_PORT"]
        with running(env) as (stop, code):
            wait_for(lambda: _ready(admin))
            for i in range(12):
                body = json.dumps({"instances": [[i - 6.0, 0.0]]}).encode()
                status, answer = get(listen, "/predict", body)
                assert status == 200
                assert json.loads(answer)["revision"] == "a"
            wait_for(lambda: Path(env["STRATUS_REPORT"]).is_file())
            written = report(env)
            assert written["verdict"] == "Passed"
            assert {r["source"] for r in written["results"]} == {"replay", "shadow"}
            assert set(written["shadowOverheadMs"]) == {"p50", "p99"}
            # Decided, and still serving users.
            assert get(listen, "/predict", b'{"instances": [[0, 0]]}')[0] == 200
            status, live = get(admin, "/report")
            assert status == 200
            assert json.loads(live)["requests"]["shadow"] >= 10
            stop.set()
            wait_for(lambda: bool(code))
            assert not _ready(admin)
    assert code == [0]
    assert report(env) == written  # written once


def test_the_timeout_fails_a_shadow_that_has_too_few_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run, "duration_seconds", lambda _: 0.5)
    validation = {"shadow": {"samples": 1000}, "comparators": [LABELS], "timeout": "10s"}
    with model("a") as stable, model("b") as candidate:
        env = environment(tmp_path, candidate, stable, validation)
        with running(env) as (_, code):
            wait_for(lambda: _ready(env["STRATUS_ADMIN_PORT"]))
            get(env["STRATUS_LISTEN_PORT"], "/predict", b'{"instances": [[0, 0]]}')
            wait_for(lambda: Path(env["STRATUS_REPORT"]).is_file())
            written = report(env)
            assert _ready(env["STRATUS_ADMIN_PORT"])  # it keeps proxying
        assert code == [0]
    assert written["verdict"] == "Failed"
    assert written["reason"].startswith("timeout 10s: ")
    assert "of 1000 samples" in written["reason"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"STRATUS_VALIDATION": "{}"}, "STRATUS_VALIDATION: comparators"),
        ({"STRATUS_CANDIDATE_URL": "candidate:8080"}, "STRATUS_CANDIDATE_URL"),
        ({"STRATUS_LISTEN_PORT": "http"}, "STRATUS_LISTEN_PORT"),
        ({"STRATUS_REQUESTS": ""}, "STRATUS_REQUESTS"),
    ],
)
def test_a_bad_configuration_is_a_failed_report_and_exit_1(
    tmp_path: Path, change: dict[str, str], message: str
) -> None:
    validation = {
        "replay": {"configMap": {"name": "r", "key": "k"}},
        "shadow": {},
        "comparators": [LABELS],
    }
    env = {**environment(tmp_path, "http://c:1", "http://s:1", validation), **change}
    assert run.run(env, threading.Event(), host="127.0.0.1") == 1
    written = report(env)
    assert written["verdict"] == "Failed"
    assert written["reason"].startswith(f"bad configuration: {message}")


def test_a_bad_request_set_names_the_line_and_exits_1(tmp_path: Path) -> None:
    validation = {"replay": {"configMap": {"name": "r", "key": "k"}}, "comparators": [LABELS]}
    env = environment(tmp_path, "http://c:1", "http://s:1", validation)
    Path(env["STRATUS_REQUESTS"]).write_text('{"instances": [[1, 2]]}\n\n{"instances": [\n')
    assert run.run(env, threading.Event(), host="127.0.0.1") == 1
    assert report(env)["reason"].startswith("request set: line 3: not JSON")


def test_relay_waits_for_the_report_and_copies_it(tmp_path: Path) -> None:
    source, target = tmp_path / "report.json", tmp_path / "termination-log"
    target.write_text("")
    writer = threading.Timer(0.1, lambda: source.write_text('{"verdict":"Passed"}'))
    writer.start()
    assert run.relay(source, target, poll_s=0.02, timeout_s=5) == 0
    writer.join()
    assert target.read_text() == '{"verdict":"Passed"}'
    assert run.relay(tmp_path / "never.json", target, poll_s=0.02, timeout_s=0.1) == 1


def test_the_module_runs_as_the_pod_runs_it(tmp_path: Path) -> None:
    """`python -m stratus.validation run` with a bad environment, then `relay`: the Failed
    report reaches the termination log."""
    report_file, log = tmp_path / "report.json", tmp_path / "termination-log"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "operator"),
        "STRATUS_VALIDATION": "not json",
        "STRATUS_REPORT": str(report_file),
    }
    ran = subprocess.run(
        [sys.executable, "-m", "stratus.validation", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ran.returncode == 1, ran.stderr
    relay = ["relay", "--report", str(report_file), "--to", str(log)]
    relayed = subprocess.run(
        [sys.executable, "-m", "stratus.validation", *relay],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert relayed.returncode == 0
    written = json.loads(log.read_text())
    assert written["verdict"] == "Failed"
    assert written["reason"].startswith("bad configuration: STRATUS_VALIDATION")


def _ready(port: str) -> bool:
    try:
        return get(port, "/ready")[0] == 200
    except OSError:
        return False
