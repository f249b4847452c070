"""The CLI's commands against a fake cluster: argument parsing, what each command reads and
writes, and the exit code of `rollout status` for sequences of statuses."""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

import stratus
from stratus import cli
from stratus.cli import resources, rollout
from stratus.cli.render import INFERENCESERVICE, TRAININGJOB, Kind

Obj = dict[str, Any]


def infs(phase: str | None, generation: int = 1, observed: int = 1, **status: Any) -> Obj:
    return {
        "kind": "InferenceService",
        "metadata": {"name": "web", "namespace": "ml", "generation": generation, "uid": "u"},
        "spec": {"rollout": {"steps": [{"weight": 50, "pause": {}}, {"weight": 100}]}},
        "status": {"phase": phase, "observedGeneration": observed, **status},
    }


class FakeCluster:
    """What the commands see of a cluster: objects by kind and name, and the writes made."""

    def __init__(self, objects: dict[tuple[str, str], Obj], sequence: list[Obj] | None = None):
        self.namespace = "ml"
        self.objects = objects
        self.sequence = sequence or []
        self.patches: list[tuple[str, str, Obj]] = []
        self.selectors: list[str] = []
        self.pod_items: list[Obj] = []
        self.logs: dict[str, list[str]] = {}

    def get(self, kind: Kind, name: str) -> Obj:
        if kind is INFERENCESERVICE and self.sequence:
            return self.sequence.pop(0) if len(self.sequence) > 1 else self.sequence[0]
        try:
            return self.objects[(kind.plural, name)]
        except KeyError:
            raise RuntimeError(f"{kind.singular} ml/{name} not found") from None

    def find(self, name: str, kind: Kind | None) -> tuple[Kind, Obj]:
        for candidate in [kind] if kind else [TRAININGJOB, INFERENCESERVICE]:
            if (candidate.plural, name) in self.objects:
                return candidate, self.objects[(candidate.plural, name)]
        raise RuntimeError(f"no trainingjob or inferenceservice ml/{name}")

    def list_all(self, kind: Kind, all_namespaces: bool) -> list[Obj]:
        return [o for (plural, _), o in sorted(self.objects.items()) if plural == kind.plural]

    def patch(self, kind: Kind, name: str, body: Obj) -> Obj:
        _, obj = self.find(name, kind)
        self.patches.append((kind.plural, name, body))
        return obj

    def events(self, obj: Obj) -> list[Obj]:
        return []

    def jobs(self, selector: str) -> list[Obj]:
        self.selectors.append(selector)
        return []

    def deployments(self, selector: str) -> list[Obj]:
        self.selectors.append(selector)
        return []

    def pods(self, selector: str) -> list[Obj]:
        self.selectors.append(selector)
        return self.pod_items

    def log(self, pod: str, container: str | None, follow: bool, tail: int | None) -> Any:
        self.selectors.append(f"log {pod}/{container} follow={follow} tail={tail}")
        return iter(self.logs[pod])


TRAINING = {
    "kind": "TrainingJob",
    "metadata": {"name": "train", "namespace": "ml", "uid": "t"},
    "spec": {"image": "train:1"},
    "status": {"phase": "Running", "attempt": 3, "activeJob": "train-3"},
}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    cluster = FakeCluster(
        {
            ("trainingjobs", "train"): TRAINING,
            ("inferenceservices", "web"): infs("Healthy", stableRevision="aaa"),
        }
    )
    seen: list[argparse.Namespace] = []

    def connect(args: argparse.Namespace) -> FakeCluster:
        seen.append(args)
        return cluster

    monkeypatch.setattr(rollout, "connect", connect)
    monkeypatch.setattr(resources, "connect", connect)
    return cluster


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("words", "parsed"),
    [
        ([], (None, None)),
        (["tj"], (TRAININGJOB, None)),
        (["infs", "web"], (INFERENCESERVICE, "web")),
        (["tj/train"], (TRAININGJOB, "train")),
        (["train"], (None, "train")),
    ],
)
def test_get_takes_a_kind_a_name_or_both(words: list[str], parsed: tuple[Any, Any]) -> None:
    assert resources.parse_get(words) == parsed


def test_common_flags_and_defaults() -> None:
    args = cli.build_parser().parse_args(
        ["get", "tj", "-n", "ml", "--kubeconfig", "k", "-o", "yaml"]
    )
    assert (args.words, args.namespace, args.kubeconfig, args.output) == (
        ["tj"],
        "ml",
        Path("k"),
        "yaml",
    )
    # No -n: the kubeconfig context's namespace, decided on connecting.
    assert cli.build_parser().parse_args(["status", "web"]).namespace is None
    logs = cli.build_parser().parse_args(["logs", "train", "--attempt", "2", "-f", "--tail", "5"])
    assert (logs.attempt, logs.follow, logs.tail, logs.revision) == (2, True, 5, None)
    watch = cli.build_parser().parse_args(["rollout", "status", "web", "-w", "--timeout", "5m"])
    assert (watch.watch, watch.timeout, watch.output) == (True, "5m", "text")
    dash = cli.build_parser().parse_args(["dashboard"])
    assert (dash.address, dash.port, dash.namespace, dash.no_browser) == (
        "127.0.0.1",
        3100,
        None,
        False,
    )


def test_the_plugin_names_itself_as_kubectl_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"], prog="kubectl stratus")
    assert capsys.readouterr().out.startswith("usage: kubectl stratus")


def test_get_lists_both_kinds_prefixed(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "get")
    assert code == 0
    assert "trainingjob/train" in out
    assert "inferenceservice/web" in out


def test_get_one_as_json_is_the_object(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "get", "web", "-o", "json")
    assert code == 0
    assert json.loads(out)["metadata"]["name"] == "web"


def test_a_missing_resource_is_one_line(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "describe", "nope")
    assert (code, out, err) == (1, "", "stratus: no trainingjob or inferenceservice ml/nope\n")
    code, _, err = run(capsys, "get", "pods", "web")
    assert code == 1
    assert err.startswith("stratus: unknown kind 'pods'")


def test_describe_a_trainingjob_reads_its_jobs_and_prints_attempts(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "describe", "tj", "train")
    assert code == 0
    assert fake.selectors == ["stratus.dev/trainingjob=train"]
    assert "Attempts:" in out
    assert "#3" in out
    code, out, _ = run(capsys, "describe", "train", "-o", "yaml")
    assert "attempts:" in out
    assert "- number: 1" in out


def test_suspend_and_resume_patch_spec_suspend(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "suspend", "train")[0] == 0
    assert run(capsys, "resume", "tj/train")[0] == 0
    assert fake.patches == [
        ("trainingjobs", "train", {"spec": {"suspend": True}}),
        ("trainingjobs", "train", {"spec": {"suspend": False}}),
    ]
    code, _, err = run(capsys, "suspend", "infs/web")
    assert (code, err) == (1, "stratus: infs/web: not a trainingjob\n")


def test_promote_annotates_with_a_fresh_value(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "promote", "web", "--full")
    assert code == 0
    ((_, name, body),) = fake.patches
    assert name == "web"
    assert list(body["metadata"]["annotations"]) == ["stratus.dev/promote-full"]
    assert out == "promote requested for inferenceservice ml/web\n"


def test_logs_of_the_latest_attempt_prefix_each_worker(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.pod_items = [
        {"metadata": {"name": f"train-3-{i}"}, "spec": {"containers": [{"name": "train"}]}}
        for i in (1, 0)
    ]
    fake.logs = {"train-3-0": ["a", "b"], "train-3-1": ["c"]}
    code, out, _ = run(capsys, "logs", "train", "--tail", "10")
    assert code == 0
    assert fake.selectors[0] == "stratus.dev/trainingjob=train,stratus.dev/attempt=3"
    assert out == "[train-3-0] a\n[train-3-0] b\n[train-3-1] c\n"
    assert "log train-3-0/train follow=False tail=10" in fake.selectors


def test_logs_of_an_ended_attempt_say_why_there_are_none(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "logs", "train", "--attempt", "1")
    assert code == 1
    assert "attempt 1 of trainingjob train has no pods left" in err


def test_logs_of_an_inferenceservice_are_its_stable_revision_or_the_one_asked() -> None:
    obj = infs("Healthy", stableRevision="aaa")
    assert resources.log_pods(INFERENCESERVICE, obj, None, None) == (
        "stratus.dev/inferenceservice=web,stratus.dev/revision=aaa",
        "revision aaa",
    )
    assert resources.log_pods(INFERENCESERVICE, obj, None, "bbb")[1] == "revision bbb"
    with pytest.raises(ValueError, match="--attempt is for a TrainingJob"):
        resources.log_pods(INFERENCESERVICE, obj, 2, None)
    pod = {
        "metadata": {"annotations": {resources.DEFAULT_CONTAINER_ANNOTATION: "server"}},
        "spec": {"containers": [{"name": "proxy"}, {"name": "server"}]},
    }
    assert resources.container_of(pod, None) == "server"
    assert resources.container_of(pod, "proxy") == "proxy"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def watch(sequence: list[Any], timeout: float) -> tuple[int, list[str], FakeClock]:
    clock = FakeClock()
    lines: list[str] = []
    reads = iter(sequence)

    def fetch() -> Obj:
        found = next(reads, sequence[-1])
        if isinstance(found, Exception):
            raise found
        obj: Obj = found
        return obj

    code, _ = rollout.watch(fetch, timeout, lines.append, 2.0, clock, clock.sleep)
    return code, lines, clock


CANARY: dict[str, Any] = {"canaryRevision": "bbb", "canaryWeight": 50, "currentStep": 0}


def test_watch_ends_healthy_once_promoted_with_a_line_per_change() -> None:
    code, lines, clock = watch(
        [
            infs("Healthy", generation=2, observed=1, stableRevision="aaa"),
            infs("Progressing", generation=2, observed=2, **CANARY),
            infs("Progressing", generation=2, observed=2, **CANARY),
            infs("Healthy", generation=2, observed=2, stableRevision="bbb"),
        ],
        timeout=60,
    )
    assert code == 0
    assert lines == [
        "waiting for the operator to act on generation 2",
        "Progressing: canary bbb step 1 of 2, at 50%",
        "Healthy: stable bbb, 0 ready",
    ]
    assert clock.slept == [2.0, 2.0, 2.0]


def test_watch_ends_1_when_rolled_back_and_2_when_paused_for_a_person() -> None:
    assert watch([infs("Progressing", **CANARY), infs("Degraded")], 60)[0] == 1
    assert watch([infs("Paused", **CANARY)], 60)[0] == 2


def test_watch_ends_3_at_its_timeout_and_without_watch_after_one_read() -> None:
    code, _, clock = watch([infs("Progressing", **CANARY)], timeout=5)
    assert (code, clock.now, clock.slept) == (3, 5.0, [2.0, 2.0, 1.0])
    code, _, clock = watch([infs("Progressing", **CANARY)], timeout=0)
    assert (code, clock.slept) == (3, [])


def test_watch_rides_out_a_failed_read() -> None:
    code, lines, _ = watch(
        [infs("Progressing", **CANARY), RuntimeError("connection refused"), infs("Healthy")], 60
    )
    assert code == 0
    assert lines[1] == "could not read it, trying again: connection refused"


def test_rollout_status_prints_state_and_exits_with_the_outcome(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.sequence = [infs("Paused", **CANARY)]
    code, out, _ = run(capsys, "rollout", "status", "web")
    assert code == 2
    assert "->   step 1: 50%, until promoted" in out
    assert out.endswith(
        "rollout paused: waiting for a person (stratus promote, or stratus abort)\n"
    )
    fake.sequence = [infs("Degraded", abortedRevision="bbb")]
    code, out, err = run(capsys, "rollout", "status", "web", "-o", "json")
    assert code == 1
    assert json.loads(out)["exitCode"] == 1
    assert json.loads(out)["status"]["abortedRevision"] == "bbb"
    assert err.startswith("Degraded")  # progress goes to stderr, the JSON alone to stdout


def test_rollout_status_of_a_missing_service_is_4_not_a_rollback(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "rollout", "status", "nope", "--watch")
    assert (code, err) == (4, "stratus rollout status: inferenceservice ml/nope not found\n")
    code, _, err = run(capsys, "rollout", "status", "web", "--watch", "--timeout", "soon")
    assert code == 4
    assert "not a duration" in err


def test_dashboard_calls_serve_with_the_flags(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[dict[str, Any]] = []

    def serve(**kwargs: Any) -> int:
        calls.append(kwargs)
        return 0

    fake_dashboard = types.SimpleNamespace(serve=serve)
    monkeypatch.setitem(sys.modules, "stratus.dashboard", fake_dashboard)
    # Once imported, `from stratus import dashboard` reads the package's attribute instead.
    monkeypatch.setattr(stratus, "dashboard", fake_dashboard, raising=False)
    code, _, _ = run(capsys, "dashboard", "--port", "3200", "-n", "ml", "--no-browser")
    assert code == 0
    assert calls == [
        {
            "host": "127.0.0.1",
            "port": 3200,
            "kubeconfig": None,
            "namespace": "ml",
            "open_browser": False,
        }
    ]


@pytest.mark.parametrize("command", [["promote", "web"], ["abort", "web"], ["suspend", "train"]])
def test_commands_that_change_a_resource_print_it_with_o(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    code, out, _ = run(capsys, *command, "-o", "json")
    assert code == 0
    assert json.loads(out)["metadata"]["name"] == command[1]
    code, out, _ = run(capsys, *command, "-o", "yaml")
    assert code == 0
    assert yaml.safe_load(out)["metadata"]["name"] == command[1]
