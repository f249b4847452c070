"""The `stratus` command against the local cluster and a running operator: get, describe, status,
suspend and resume of a TrainingJob (kwok plays its pods), and `rollout status --watch` of an
InferenceService ending healthy, paused for a person, and rolled back, each with its exit code."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from kubernetes import client

from stratus.api.common import GROUP, VERSION
from stratus.cli import main as stratus_main
from tests.builders import TrainingJobBuilder
from tests.conftest import Cluster
from tests.e2e.test_serving import service
from tests.support import wait_for

pytestmark = pytest.mark.usefixtures("operator")
Obj = dict[str, Any]


class Cli:
    def __init__(
        self, cluster: Cluster, namespace: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.cluster = cluster
        self.ns = namespace
        self.capsys = capsys
        self.custom = client.CustomObjectsApi(cluster.api)

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = stratus_main([*args, "-n", self.ns, "--kubeconfig", str(self.cluster.kubeconfig)])
        out, err = self.capsys.readouterr()
        return code, out, err

    def status(self, plural: str, name: str) -> Obj:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name)
        status: Obj = obj.get("status") or {}
        return status

    def patch_spec(self, plural: str, name: str, spec: Obj) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, plural, name, {"spec": spec}
        )


def timeline(describe: str) -> list[tuple[str, str]]:
    """The ATTEMPT and STATE columns of `describe`'s attempt timeline."""
    section = describe.split("Attempts:\n", 1)[1].split("Conditions:\n", 1)[0]
    rows = [line.split() for line in section.splitlines()[1:]]
    return [(row[0], row[1]) for row in rows]


@pytest.fixture
def cli(cluster: Cluster, namespace: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(cluster, namespace, capsys)


def test_get_describe_suspend_and_resume_a_trainingjob(cli: Cli) -> None:
    cli.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        cli.ns,
        "trainingjobs",
        TrainingJobBuilder("cli").spot().runs_for("10m").reports("/checkpoints/step-7", 7).build(),
    )
    wait_for("cli Running", lambda: cli.status("trainingjobs", "cli").get("phase") == "Running")

    code, out, _ = cli("get", "tj")
    assert code == 0
    header, row = out.splitlines()
    assert header.split()[:4] == ["NAME", "PHASE", "ATTEMPT", "PREEMPTIONS"]
    assert row.split()[:3] == ["cli", "Running", "1"]
    code, out, _ = cli("get", "-o", "json")
    assert code == 0
    assert [i["metadata"]["name"] for i in json.loads(out)["items"]] == ["cli"]

    code, out, _ = cli("describe", "tj/cli")
    assert code == 0
    assert "Phase:       Running" in out
    assert timeline(out) == [("#1", "Running")]

    code, out, _ = cli("suspend", "cli")
    assert (code, out) == (
        0,
        f"trainingjob {cli.ns}/cli suspended: its active attempt stops, uncounted\n",
    )
    wait_for("Suspended", lambda: cli.status("trainingjobs", "cli").get("phase") == "Suspended")
    # The Suspended Event is posted in the background: describe shows it once it is there.
    wait_for(
        "attempt 1 shown as suspended",
        lambda: timeline(cli("describe", "trainingjob", "cli")[1])[:1] == [("#1", "Suspended")],
    )

    assert cli("resume", "cli")[0] == 0
    wait_for(
        "attempt 2 running",
        lambda: (
            (s := cli.status("trainingjobs", "cli")).get("attempt") == 2
            and s.get("phase") == "Running"
        ),
    )
    code, out, _ = cli("status", "cli", "-o", "yaml")
    status = yaml.safe_load(out)
    assert (code, status["attempt"], status["preemptions"], status["restarts"]) == (0, 2, 0, 0)
    code, out, _ = cli("describe", "cli", "-o", "json")
    attempts = json.loads(out)["attempts"]
    assert [(a["number"], a["state"]) for a in attempts][-1] == (2, "Running")
    assert attempts[-1]["resumedFrom"] == "/checkpoints/step-7"
    code, _, err = cli("logs", "cli", "--attempt", "5")
    assert code == 1
    assert "attempt 5 of trainingjob cli has no pods" in err


def test_rollout_status_exits_with_how_the_rollout_ended(cli: Cli) -> None:
    cli.custom.create_namespaced_custom_object(
        GROUP, VERSION, cli.ns, "inferenceservices", service("web")
    )
    code, out, _ = cli("rollout", "status", "web", "--watch", "--timeout", "60s")
    assert code == 0, out
    assert out.endswith("rollout healthy\n")
    stable = cli.status("inferenceservices", "web")["stableRevision"]

    # The first step pauses until promoted: the watch ends 2, waiting for a person.
    cli.patch_spec("inferenceservices", "web", {"image": "serve:2"})
    code, out, _ = cli("rollout", "status", "web", "--watch", "--timeout", "60s")
    assert code == 2, out
    assert "->   step 1: 50%, until promoted" in out
    canary = cli.status("inferenceservices", "web")["canaryRevision"]
    assert canary != stable

    code, out, _ = cli("get", "infs", "web")
    assert out.splitlines()[1].split()[:4] == ["web", "Paused", stable, canary]
    code, out, _ = cli("describe", "infs/web")
    assert code == 0
    revisions = out.split("Revisions:\n", 1)[1]
    assert f"{canary}" in revisions
    assert "canary" in revisions

    assert cli("promote", "web")[0] == 0
    code, out, _ = cli("rollout", "status", "web", "--watch", "--timeout", "60s")
    assert code == 0, out
    assert cli.status("inferenceservices", "web")["stableRevision"] == canary

    # A canary aborted by a person is rolled back: 1, and the JSON says so.
    cli.patch_spec("inferenceservices", "web", {"image": "serve:3"})
    assert cli("rollout", "status", "web", "--watch", "--timeout", "60s")[0] == 2
    assert cli("abort", "web")[0] == 0
    code, out, err = cli("rollout", "status", "web", "--watch", "--timeout", "60s", "-o", "json")
    assert code == 1, err
    result = json.loads(out)
    assert (result["exitCode"], result["status"]["phase"]) == (1, "Degraded")
    assert result["status"]["stableRevision"] == canary

    code, _, err = cli("rollout", "status", "missing", "--watch", "--timeout", "5s")
    assert code == 4
    assert "not found" in err
