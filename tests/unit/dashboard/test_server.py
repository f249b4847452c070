"""The dashboard's HTTP layer against an in-memory API: pages, views, live updates, commands,
and the checks that keep other sites from giving commands."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from stratus.dashboard.live import Live
from stratus.dashboard.memory import MemorySource
from stratus.dashboard.server import Dashboard, Server, make_server
from tests.unit.dashboard.data import canary_status, epoch, preempted_run, service

TOKEN = "test-token"


@dataclass
class Running:
    source: MemorySource
    live: Live
    server: Server

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.server_address[1], timeout=10)
        try:
            conn.request(
                method, path, body=body or None, headers={"Host": self.host, **(headers or {})}
            )
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def json(self, path: str) -> Any:
        status, _, body = self.request("GET", path)
        assert status == 200, body
        return json.loads(body)

    def command(self, path: str, **headers: str) -> tuple[int, Any]:
        sent = {
            "Origin": f"http://{self.host}",
            "Content-Type": "application/json",
            "X-Stratus-Token": TOKEN,
            **headers,
        }
        status, _, body = self.request("POST", path, {k: v for k, v in sent.items() if v}, "{}")
        return status, json.loads(body)


@pytest.fixture
def running() -> Iterator[Running]:
    source = MemorySource(user="alice")
    tj, events, pods = preempted_run()
    source.put(tj)
    for e in events:
        source.add_event(e)
    for p in pods:
        source.add_pod(p)
    source.put(service(**canary_status(1, 50, 50, 0, 0.01)))
    live = Live(source, None, clock=lambda: epoch(1500), watch_timeout=1)
    server = make_server(Dashboard(live, TOKEN), "127.0.0.1", 0)
    live.start()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Running(source, live, server)
    finally:
        live.stop()
        server.shutdown()
        server.server_close()


def test_the_page_carries_the_token_and_a_strict_policy(running: Running) -> None:
    for path in ("/", "/trainingjobs/ml/llm", "/inferenceservices/serving/web"):
        status, headers, body = running.request("GET", path)
        assert status == 200
        assert f'content="{TOKEN}"' in body.decode()
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        # Nothing from elsewhere: every asset is this server's.
        assert "http" not in body.decode().replace('content="width', "")
    for path, kind in (("/static/app.js", "text/javascript"), ("/static/app.css", "text/css")):
        status, headers, body = running.request("GET", path)
        assert (status, headers["Content-Type"].split(";")[0]) == (200, kind)
        assert b"https://" not in body
    assert running.request("GET", "/nope")[0] == 404


def test_another_host_name_is_refused(running: Running) -> None:
    # A site whose name resolves to 127.0.0.1 (DNS rebinding) sends its own name as Host.
    status, _, _ = running.request("GET", "/api/resources", {"Host": "evil.example:80"})
    assert status == 421
    status, _, _ = running.request(
        "GET", "/api/resources", {"Host": f"localhost:{running.server.server_address[1]}"}
    )
    assert status == 200


def test_resources_list_both_kinds_and_filter(running: Running) -> None:
    found = running.json("/api/resources")
    assert [(r["kind"], r["name"]) for r in found["items"]] == [
        ("TrainingJob", "llm"),
        ("InferenceService", "web"),
    ]
    assert found["errors"] == {}
    only = running.json("/api/resources?kind=InferenceService&phase=Progressing")
    assert [r["name"] for r in only["items"]] == ["web"]
    assert running.json("/api/resources?name=zzz")["items"] == []


def test_detail_views(running: Running) -> None:
    tj = running.json("/api/trainingjobs/ml/llm")
    assert [a["ended"] for a in tj["attempts"]] == ["Preempted", "Running"]
    assert tj["attempts"][0]["nodes"] == ["spot-a", "spot-b"]
    assert len(tj["timeline"]["bars"]) == 2
    infs = running.json("/api/inferenceservices/serving/web")
    assert infs["charts"][0]["title"] == "Canary traffic (%)"
    assert infs["steps"][1]["state"] == "current"
    status, _, body = running.request("GET", "/api/trainingjobs/ml/missing")
    assert (status, json.loads(body)["error"]) == (404, "TrainingJob ml/missing not found")
    assert running.request("GET", "/api/jobs/ml/llm")[0] == 404


def test_a_trainingjob_page_without_permission_on_pods_says_so(running: Running) -> None:
    running.source.denied.add("pods")
    tj = running.json("/api/trainingjobs/ml/llm")
    assert tj["warnings"] == ["pods not shown: pods is forbidden for alice"]
    assert [a["number"] for a in tj["attempts"]] == [1, 2]


@pytest.mark.parametrize(
    ("command", "annotation", "reason"),
    [
        ("promote", "stratus.dev/promote", "PromoteRequested"),
        ("promote-full", "stratus.dev/promote-full", "PromoteFullRequested"),
        ("abort", "stratus.dev/abort", "AbortRequested"),
        ("retry", "stratus.dev/retry", "RetryRequested"),
    ],
)
def test_a_command_annotates_and_records_who_asked(
    running: Running, command: str, annotation: str, reason: str
) -> None:
    before = time.time_ns()
    status, body = running.command(f"/api/inferenceservices/serving/web/{command}")
    assert status == 200, body
    assert body["event"] is True
    obj = running.source.get("InferenceService", "serving", "web")
    assert obj is not None
    assert int(obj["metadata"]["annotations"][annotation]) >= before
    recorded = running.source.events("serving", "uid-serving-web")[-1]
    assert recorded["reason"] == reason
    assert recorded["source"] == {"component": "stratus-dashboard"}
    assert recorded["reportingComponent"] == "stratus-dashboard"
    assert recorded["involvedObject"]["kind"] == "InferenceService"
    assert recorded["message"] == (
        f"{command} requested by alice from the Stratus dashboard (stratus-dashboard)"
    )


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"X-Stratus-Token": ""}, "missing or wrong token: reload the page"),
        ({"X-Stratus-Token": "guess"}, "missing or wrong token: reload the page"),
        (
            {"Origin": "http://evil.example"},
            "cross-site request refused: Origin must be this server",
        ),
        ({"Origin": ""}, "cross-site request refused: Origin must be this server"),
        ({"Sec-Fetch-Site": "cross-site"}, "cross-site request refused"),
        ({"Content-Type": "text/plain"}, "commands are JSON requests"),
        (
            {"Host": "evil.example:80", "Origin": "http://evil.example:80"},
            "this server does not answer to that Host",
        ),
    ],
)
def test_a_command_from_elsewhere_is_refused(
    running: Running, headers: dict[str, str], why: str
) -> None:
    status, body = running.command("/api/inferenceservices/serving/web/abort", **headers)
    assert (status, body) == (403, {"error": why})
    assert not [c for c in running.source.calls if c[0] in ("annotate", "record_event")]


def test_unknown_commands_and_resources(running: Running) -> None:
    assert running.command("/api/inferenceservices/serving/web/delete")[0] == 404
    assert running.command("/api/trainingjobs/ml/llm/promote")[0] == 404
    status, body = running.command("/api/inferenceservices/serving/gone/promote")
    assert (status, body["error"]) == (404, 'inferenceservices "gone" not found')


def test_permissions_are_the_users(running: Running) -> None:
    running.source.denied.add("annotate")
    status, body = running.command("/api/inferenceservices/serving/web/promote")
    assert (status, body["error"]) == (403, "annotate is forbidden for alice")
    running.source.denied = {"record_event"}
    status, body = running.command("/api/inferenceservices/serving/web/promote")
    assert status == 200
    assert (body["event"], body["warning"]) == (False, "record_event is forbidden for alice")


def _stream_messages(running: Running, count: int, action: Any) -> list[dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", running.server.server_address[1], timeout=10)
    conn.request("GET", "/api/stream", headers={"Host": running.host})
    response = conn.getresponse()
    assert response.getheader("Content-Type") == "text/event-stream"
    assert response.readline() == b"retry: 2000\n"
    action()
    found: list[dict[str, Any]] = []
    try:
        while len(found) < count:
            line = response.readline()
            if line.startswith(b"data: "):
                found.append(json.loads(line[6:]))
    finally:
        conn.close()
    return found


def test_changes_stream_to_the_page(running: Running) -> None:
    running.live.wait_synced(5)
    updated = service(**canary_status(1, 50, 40, 30, 0.02))

    def change() -> None:
        running.source.put(updated)
        running.source.delete("TrainingJob", "ml", "llm")

    # One watch per kind: the two kinds' messages may come in either order.
    changed, deleted = sorted(_stream_messages(running, 2, change), key=lambda m: m["type"])
    assert (changed["type"], changed["name"]) == ("changed", "web")
    assert changed["row"]["detail"] == "canary bbb222 at 40% of 50%"
    assert deleted == {"type": "deleted", "kind": "TrainingJob", "namespace": "ml", "name": "llm"}
    # The new version joined the history the charts are drawn from.
    weights = running.live.history.get(("InferenceService", "serving", "web"))["weights"]
    assert [w["achieved"] for w in weights] == [50, 40]


def test_an_event_about_a_resource_is_streamed(running: Running) -> None:
    running.live.wait_synced(5)
    (message,) = _stream_messages(
        running, 1, lambda: running.command("/api/inferenceservices/serving/web/promote")
    )
    # The annotation's MODIFIED comes first, then the Event: the first is enough here.
    assert (message["type"], message["name"]) in {("changed", "web"), ("event", "web")}


def test_an_expired_watch_lists_again(running: Running) -> None:
    running.live.wait_synced(5)
    running.source.expire()
    running.source.put(service(name="new", **canary_status(0, 10, 10, 0, 0.01)))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        names = [r["name"] for r in running.json("/api/resources")["items"]]
        if "new" in names:
            break
        time.sleep(0.05)
    assert "new" in names


def test_a_kind_the_user_cannot_list_is_named() -> None:
    source = MemorySource(user="bob")
    source.denied.add("list")
    live = Live(source, "team-a", watch_timeout=1)
    server = make_server(Dashboard(live, TOKEN), "127.0.0.1", 0)
    live.start()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        found = Running(source, live, server).json("/api/resources")
        assert found["items"] == []
        assert found["namespace"] == "team-a"
        assert found["errors"]["TrainingJob"] == "list is forbidden for bob"
    finally:
        live.stop()
        server.shutdown()
        server.server_close()
