"""Prediction validation on the real node, with the example model server in containers and the
validator (our operator image) in its own pod:
- shadow: a candidate that flips 5% of its labels is blocked within 2,000 compared requests,
  while a load generator checks that no user request got a candidate's answer; the same model
  with only random noise in its scores (a nondeterministic model, as the stable is) passes, and
  `stratus validate` replays 20 times against the two revisions' real pods: at least 19 pass;
- replay against an external baseline URL (a second model server standing in for the on-premises
  one): the report lands in the status, a matching candidate is promoted and a differing one is
  rolled back."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from stratus.api.common import GROUP, VERSION
from stratus.cli import main as stratus_main
from stratus.conditions import parse_time
from stratus.serving.labels import INFERENCESERVICE_LABEL, REVISION_LABEL
from tests.conftest import Cluster
from tests.e2e.test_real_canary import CA_CONFIG_MAP, IMAGE, MODEL, PORT, ModelFiles, node_ip
from tests.e2e.test_serving import Serving
from tests.support import needs_real_node, wait_for

pytestmark = pytest.mark.usefixtures("operator")
NAME = "twin"
# MODEL's score is sum(x) - 10 and its label "large" above 0: features drawn so that the sums
# spread around the boundary, where noise in the scores can change a label.
FEATURES = (0.0, 5.0)
NOISE = "0.15"
FLIP = "0.05"
MIN_AGREEMENT = 0.98
SHADOW_SAMPLES = 1000
REPLAY_LINES = 1000
RUNS = 20
RATE = 60.0  # requests a second from the load generator
LABELS = {"name": "labels", "type": "label", "fields": ["predictions"]}
SCORES = {"name": "scores", "type": "numeric", "fields": ["scores"], "absolute": 1e-9}


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible test data, not secrets


def instance(rng: random.Random) -> list[float]:
    return [round(rng.uniform(*FEATURES), 3) for _ in range(4)]


def env(revision: str, flip: str = "0", noise: str = NOISE) -> list[dict[str, str]]:
    return [
        {"name": "REVISION", "value": revision},
        {"name": "FLIP_RATIO", "value": flip},
        {"name": "SCORE_NOISE", "value": noise},
    ]


def inference_service(
    name: str, files: ModelFiles, revision_env: list[dict[str, str]], validation: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "image": IMAGE,
            "env": revision_env,
            "model": {"uri": files.uri, "sha256": files.sha256, "caConfigMap": CA_CONFIG_MAP},
            "port": PORT,
            "resources": {"gpu": 0, "cpu": "100m", "memory": "128Mi"},
            "replicas": {"min": 2, "max": 2},
            "rollout": {
                # After validation: half the traffic, held for `stratus promote`, then all.
                "steps": [{"weight": 50, "pause": {}}, {"weight": 100}],
                "validation": validation,
            },
            "podTemplate": {
                "spec": {
                    "containers": [{"name": "server", "imagePullPolicy": "Never"}],
                    "initContainers": [{"name": "stage-model", "imagePullPolicy": "Never"}],
                }
            },
        },
    }


@dataclass(frozen=True)
class Reply:
    sent: float  # time.time()
    revision: str | None
    code: int | None
    error: str = ""


class Load:
    """POSTs one random instance at a time to a Service's ClusterIP, RATE a second, each on a
    new connection (so every request follows the Service's current endpoints), and keeps who
    answered. Stops by itself after `limit` seconds."""

    def __init__(self, cluster_ip: str, limit: float = 600) -> None:
        self.cluster_ip = cluster_ip
        self.limit = limit
        self.replies: list[Reply] = []
        self._rng = seeded(7)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> list[Reply]:
        self._stop.set()
        self._thread.join(timeout=15)
        return list(self.replies)

    def _run(self) -> None:
        start = time.monotonic()
        for n in range(int(RATE * self.limit)):
            if self._stop.wait(max(0.0, start + n / RATE - time.monotonic())):
                return
            self.replies.append(self._send())

    def _send(self) -> Reply:
        return send(self.cluster_ip, json.dumps({"instances": [instance(self._rng)]}).encode())


def send(cluster_ip: str, body: bytes) -> Reply:
    sent = time.time()
    conn = http.client.HTTPConnection(cluster_ip, 80, timeout=5)
    try:
        conn.request(
            "POST",
            "/predict",
            body=body,
            headers={"Content-Type": "application/json", "Connection": "close"},
        )
        resp = conn.getresponse()
        payload = json.loads(resp.read())
        # The header and the body both name the revision that answered.
        revision = resp.getheader("X-Revision")
        if payload.get("revision") != revision:
            return Reply(sent, None, resp.status, f"header {revision}, body {payload}")
        return Reply(sent, revision, resp.status)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return Reply(sent, None, None, f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


@pytest.fixture
def files(cluster: Cluster, real_node: str, namespace: str, tmp_path: Path) -> Iterator[ModelFiles]:
    if cluster.state_dir is None:
        needs_real_node("the model is served from the local real node's bridge address")
    served = ModelFiles(node_ip(cluster, real_node), tmp_path / "model-ca")
    client.CoreV1Api(cluster.api).create_namespaced_config_map(
        namespace,
        {"metadata": {"name": CA_CONFIG_MAP}, "data": {"ca.crt": served.tls.ca.read_text()}},
    )
    yield served
    served.stop()


def patch_env(serving: Serving, name: str, revision_env: list[dict[str, str]]) -> None:
    serving.custom.patch_namespaced_custom_object(
        GROUP, VERSION, serving.ns, "inferenceservices", name, {"spec": {"env": revision_env}}
    )


def annotate(serving: Serving, name: str, key: str) -> None:
    serving.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        serving.ns,
        "inferenceservices",
        name,
        {"metadata": {"annotations": {key: str(time.time())}}},
    )


def healthy_reason(status: dict[str, Any]) -> str:
    found = {c["type"]: c for c in status.get("conditions", [])}.get("Healthy", {})
    return str(found.get("reason", ""))


def pod_ips(core: client.CoreV1Api, namespace: str, name: str, revision: str) -> list[str]:
    pods = core.list_namespaced_pod(
        namespace, label_selector=f"{INFERENCESERVICE_LABEL}={name},{REVISION_LABEL}={revision}"
    ).items
    return [
        p.status.pod_ip
        for p in pods
        if p.status.pod_ip and p.status.phase == "Running" and p.metadata.deletion_timestamp is None
    ]


def stratus(argv: list[str]) -> tuple[int, str]:
    """`stratus` in this process: its exit code and standard output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = stratus_main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return int(code or 0), out.getvalue()


def validate(argv: list[str]) -> tuple[int, str]:
    return stratus(["validate", *argv])


def test_shadow_blocks_flipped_labels_and_passes_a_noisy_twin(
    cluster: Cluster, namespace: str, real_node: str, files: ModelFiles, tmp_path: Path
) -> None:
    serving = Serving(cluster, namespace)
    core = client.CoreV1Api(cluster.api)
    validation = {
        "shadow": {"samples": SHADOW_SAMPLES},
        "comparators": [LABELS],
        "minAgreement": MIN_AGREEMENT,
        "timeout": "5m",
    }
    serving.create(inference_service(NAME, files, env("v1"), validation))
    status = serving.wait(NAME, "v1 stable", lambda s: s.get("phase") == "Healthy", 240)
    v1 = status["stableRevision"]
    cluster_ip = str(core.read_namespaced_service(NAME, namespace).spec.cluster_ip)
    probe = json.dumps({"instances": [[1.0, 1.0, 1.0, 1.0]]}).encode()
    wait_for("the Service answering", lambda: send(cluster_ip, probe).revision == "v1")

    # A candidate flipping 5% of its labels: blocked in the shadow stage.
    load = Load(cluster_ip)
    patch_env(serving, NAME, env("flip", flip=FLIP))
    try:
        status = serving.wait(
            NAME, "the flipping candidate rolled back", lambda s: s.get("phase") == "Degraded", 300
        )
    finally:
        replies = load.stop()
    assert healthy_reason(status) == "ValidationFailed", status
    record = status["validation"]
    assert record["phase"] == "Failed"
    (result,) = record["results"]
    assert (result["name"], result["source"], result["verdict"]) == ("labels", "shadow", "Failed")
    assert result["samples"] <= 2000
    assert result["adjusted"] < MIN_AGREEMENT
    assert set(record["shadowOverheadMs"]) == {"p50", "p99"}
    assert record["examples"], "no example disagreement kept"
    assert all(set(e["baseline"]) <= {"predictions"} for e in record["examples"])
    answered = [r.revision for r in replies if r.revision]
    failed = [r for r in replies if r.code != 200 or r.error]
    print(
        f"\nflipped candidate: blocked after {result['samples']} samples, agreement "
        f"{result['agreement']:.4f}, noise floor {result['noiseFloor']:.4f}, adjusted "
        f"{result['adjusted']:.4f}; proxy overhead p50 {record['shadowOverheadMs']['p50']:.2f} "
        f"ms, p99 {record['shadowOverheadMs']['p99']:.2f} ms; load: {len(replies)} requests, "
        f"{len(failed)} not 200 ({[r.error or r.code for r in failed[:3]]}); {record['reason']}"
    )
    assert set(answered) == {"v1"}, "a user request was answered by the candidate"
    assert len(failed) <= len(replies) // 100, failed[:5]
    assert record["requests"]["shadow"] >= result["samples"]

    # The same model with noise only, like the stable: validated, then at 50% until promoted.
    load = Load(cluster_ip)
    patch_env(serving, NAME, env("twin"))
    try:
        status = serving.wait(
            NAME,
            "the twin validated and at its first step",
            lambda s: (
                (s.get("validation") or {}).get("phase") == "Passed" and s.get("canaryWeight") == 50
            ),
            300,
        )
    finally:
        replies = load.stop()
    twin = status["canaryRevision"]
    (result,) = status["validation"]["results"]
    assert result["verdict"] == "Passed"
    assert result["samples"] >= SHADOW_SAMPLES
    assert result["noiseFloor"] > 0, "the noisy stable showed no noise"
    print(
        f"noisy twin: passed over {result['samples']} samples, agreement "
        f"{result['agreement']:.4f}, noise floor {result['noiseFloor']:.4f}, adjusted "
        f"{result['adjusted']:.4f}"
    )
    # Until the first step began, every answer is the stable's; after it, some are the twin's.
    began = parse_time(status["stepStartedAt"])
    assert began is not None
    early = [r for r in replies if r.revision == "twin" and r.sent < began.timestamp()]
    assert not early, f"{len(early)} answers from the twin before its first step"
    assert {r.revision for r in replies} >= {"v1"}
    failed = [r for r in replies if r.code != 200]
    assert len(failed) <= len(replies) // 100, failed[:5]

    # 20 replays by hand against the two revisions' real pods: the false block rate.
    # At 50% of 2 replicas: one of each, once the stable has given up its second.
    def one_each() -> tuple[str, str] | None:
        old, new = pod_ips(core, namespace, NAME, v1), pod_ips(core, namespace, NAME, twin)
        return (old[0], new[0]) if len(old) == len(new) == 1 else None

    old_ip, new_ip = wait_for("one v1 and one twin pod", one_each, timeout=120)
    rng = seeded(11)
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        "".join(json.dumps({"instances": [instance(rng)]}) + "\n" for _ in range(REPLAY_LINES))
    )
    spec_file = tmp_path / "validation.json"
    spec_file.write_text(json.dumps({"comparators": [LABELS], "minAgreement": MIN_AGREEMENT}))
    passed = 0
    for _ in range(RUNS):
        code, out = validate(
            [
                "--baseline",
                f"http://{old_ip}:{PORT}/predict",
                "--candidate",
                f"http://{new_ip}:{PORT}/predict",
                "--requests",
                str(requests),
                "--spec",
                str(spec_file),
                "-o",
                "json",
            ]
        )
        assert code in (0, 1), out
        passed += code == 0
    print(f"noisy twin, {RUNS} replays of {REPLAY_LINES} requests: {passed} passed")
    assert passed >= RUNS - 1
    annotate(serving, NAME, "stratus.dev/promote-full")
    serving.wait(NAME, "the twin promoted", lambda s: s.get("stableRevision") == twin, 120)


ONPREM = "onprem"


def onprem_server(apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str) -> str:
    """The on-premises model: MODEL in a plain Deployment and Service (not an
    InferenceService), without noise; its ClusterIP (the validator pod has no cluster DNS)."""
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": ONPREM}, "data": {"model.json": json.dumps(MODEL)}}
    )
    labels = {"app": ONPREM}
    container = {
        "name": "server",
        "image": IMAGE,
        "imagePullPolicy": "Never",
        "env": [
            {"name": "REVISION", "value": ONPREM},
            {"name": "STRATUS_MODEL_DIR", "value": "/models"},
        ],
        "ports": [{"name": "http", "containerPort": PORT}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2},
        "volumeMounts": [{"name": "model", "mountPath": "/models", "readOnly": True}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": ONPREM},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [container],
                        "volumes": [{"name": "model", "configMap": {"name": ONPREM}}],
                        "securityContext": {
                            "runAsNonRoot": True,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                    },
                },
            },
        },
    )
    service = core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": ONPREM},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    )
    wait_for(
        "the on-premises model ready",
        lambda: (
            (apps.read_namespaced_deployment(ONPREM, namespace).status.ready_replicas or 0) >= 1
        ),
        timeout=120,
    )
    return str(service.spec.cluster_ip)


def test_replay_against_an_external_baseline_gates_a_rollout(
    cluster: Cluster, namespace: str, real_node: str, files: ModelFiles, tmp_path: Path
) -> None:
    serving = Serving(cluster, namespace)
    core = client.CoreV1Api(cluster.api)
    apps = client.AppsV1Api(cluster.api)
    onprem_ip = onprem_server(apps, core, namespace)
    rng = seeded(5)
    lines = [json.dumps({"instances": [instance(rng)]}) for _ in range(300)]
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "recorded"}, "data": {"requests.jsonl": "\n".join(lines)}}
    )
    validation = {
        "baseline": {"url": f"http://{onprem_ip}/predict"},
        "replay": {"configMap": {"name": "recorded", "key": "requests.jsonl"}},
        "comparators": [LABELS, SCORES],
        "minAgreement": 0.99,
        "timeout": "3m",
    }
    name = "migrated"
    serving.create(inference_service(name, files, env("v1", noise="0"), validation))
    serving.wait(name, "v1 stable", lambda s: s.get("phase") == "Healthy", 240)

    # The same model as on premises: the replay agrees, and the rollout goes on.
    patch_env(serving, name, env("cloud", noise="0"))
    status = serving.wait(
        name,
        "the cloud revision validated",
        lambda s: (s.get("validation") or {}).get("phase") in ("Passed", "Failed"),
        240,
    )
    record = status["validation"]
    assert record["phase"] == "Passed", record
    assert record["requests"] == {"replay": 300}
    assert {(r["name"], r["source"], r["verdict"]) for r in record["results"]} == {
        ("labels", "replay", "Passed"),
        ("scores", "replay", "Passed"),
    }
    cloud = status["canaryRevision"]
    annotate(serving, name, "stratus.dev/promote-full")
    serving.wait(name, "the cloud revision promoted", lambda s: s.get("stableRevision") == cloud)

    # `stratus validate` by hand against the on-premises URL prints the same report.
    requests = tmp_path / "recorded.jsonl"
    requests.write_text("\n".join(lines) + "\n")
    cloud_ip = wait_for(
        "a cloud pod", lambda: next(iter(pod_ips(core, namespace, name, cloud)), None), timeout=60
    )
    code, out = validate(
        [
            "--baseline",
            f"http://{onprem_ip}/predict",
            "--candidate",
            f"http://{cloud_ip}:{PORT}/predict",
            "--requests",
            str(requests),
            "--compare",
            "label:predictions",
        ]
    )
    print(f"\nstratus validate against the on-premises model:\n{out}")
    assert code == 0, out
    assert "label" in out

    # `stratus logs` reads the stable revision's real containers through the kubelet, once the
    # promoted revision has all its replicas (a pod still staging its model has no log yet).
    serving.wait(name, "the cloud revision healthy", lambda s: s.get("phase") == "Healthy", 120)
    code, out = stratus(["logs", name, "-n", namespace, "--kubeconfig", str(cluster.kubeconfig)])
    assert code == 0, out
    assert "model server: revision cloud" in out, out

    # A revision whose labels differ from the on-premises model's: rolled back by the replay.
    patch_env(serving, name, env("drifted", flip="0.2", noise="0"))
    status = serving.wait(
        name, "the drifted revision rolled back", lambda s: s.get("phase") == "Degraded", 240
    )
    assert healthy_reason(status) == "ValidationFailed"
    failed = {r["name"]: r for r in status["validation"]["results"]}
    assert failed["labels"]["verdict"] == "Failed"
    assert failed["labels"]["agreement"] == pytest.approx(0.8, abs=0.03)
    assert status["stableRevision"] == cloud
    wait_for(
        "the validator pods gone",
        lambda: (
            not core.list_namespaced_pod(namespace, label_selector="stratus.dev/validates").items
        ),
        timeout=60,
    )
