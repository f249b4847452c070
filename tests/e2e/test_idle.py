"""Idle reclamation end to end: synthetic DCGM series in a real Prometheus say the service's
GPUs are idle, the operator's clock (operator_clock) is moved past `after` instead of waiting,
and the service is scaled to zero with an Event, reports the GPU-hours it reclaims, and comes
back when a person runs `stratus resume infs/NAME`."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from kubernetes import client

from stratus.api.common import GROUP, VERSION
from stratus.schedules.idle import DCGM_GPU_UTIL
from tests.conftest import Cluster, OperatorClock
from tests.e2e.test_serving import Serving, service
from tests.prometheus import Exporter, Prometheus
from tests.support import wait_events, wait_for

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture
def serving(cluster: Cluster, namespace: str) -> Serving:
    return Serving(cluster, namespace)


def dcgm_labels(namespace: str, pod: str, gpu: int) -> dict[str, str]:
    """As NVIDIA's dcgm-exporter labels a GPU in its Kubernetes mode (scraped with
    honorLabels, so namespace and pod are the workload's)."""
    return {
        "gpu": str(gpu),
        "UUID": f"GPU-{gpu:08d}-e2e",
        "device": f"nvidia{gpu}",
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": "gpu-node",
        "container": "server",
        "namespace": namespace,
        "pod": pod,
    }


def nudge(serving: Serving, name: str) -> None:
    serving.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        serving.ns,
        "inferenceservices",
        name,
        {"metadata": {"annotations": {"e2e.stratus.dev/nudge": str(time.time_ns())}}},
    )


def test_idle_gpus_scale_the_service_to_zero_and_report_what_is_reclaimed(
    serving: Serving, prometheus: Prometheus, exporter: Exporter, operator_clock: OperatorClock
) -> None:
    obj = service("quiet")
    obj["spec"]["replicas"] = {"min": 2, "max": 2}
    obj["spec"]["idle"] = {
        "after": "5m",
        "gpuUtilizationBelow": 10,
        "prometheusAddress": prometheus.url,
    }
    serving.create(obj)
    status = serving.wait("quiet", "Healthy", lambda s: s.get("phase") == "Healthy")
    stable = status["stableRevision"]
    core = client.CoreV1Api(serving.cluster.api)
    pods = [
        p.metadata.name
        for p in core.list_namespaced_pod(
            serving.ns, label_selector="stratus.dev/inferenceservice=quiet"
        ).items
    ]
    assert len(pods) == 2
    # A busy GPU first: not idle.
    for gpu, pod in enumerate(pods):
        exporter.gauge(DCGM_GPU_UTIL, dcgm_labels(serving.ns, pod, gpu), 85.0 if gpu else 2.0)
    series = f'{DCGM_GPU_UTIL}{{namespace="{serving.ns}"}}'
    wait_for("Prometheus to have the DCGM series", lambda: len(prometheus.query(series)) == 2)
    # Two readings (IDLE_CHECK apart) on the busy GPU.
    time.sleep(35)
    assert "idleSince" not in serving.status("quiet")["schedule"]

    for gpu, pod in enumerate(pods):
        exporter.gauge(DCGM_GPU_UTIL, dcgm_labels(serving.ns, pod, gpu), 3.0)
    # The readings take the busiest GPU over the last minute: idle a minute or so after.
    idle = serving.wait(
        "quiet",
        "seen idle",
        lambda s: (s.get("schedule") or {}).get("idleSince"),
        timeout=180,
    )
    assert idle["schedule"]["reason"] == "Idle"
    assert serving.replicas("quiet") == {stable: 2}

    operator_clock.set(6 * 60)
    down = serving.wait("quiet", "scaled to zero", lambda s: s.get("phase") == "ScaledDown")
    assert serving.replicas("quiet") == {stable: 0}
    assert down["schedule"]["reason"] == "IdleScaledToZero"
    assert down["schedule"]["held"] is True
    healthy = next(c for c in down["conditions"] if c["type"] == "Healthy")
    assert healthy["reason"] == "IdleScaledToZero"
    (scaled,) = wait_events(serving.cluster.api, serving.ns, "quiet", "IdleScaledToZero")
    assert scaled.type == "Normal"
    assert scaled.message == "idle for 5m: scaled to zero"
    for gpu, pod in enumerate(pods):
        exporter.gauge(DCGM_GPU_UTIL, dcgm_labels(serving.ns, pod, gpu), None)

    # An hour later: 2 replicas x 1 GPU held at zero for an hour.
    operator_clock.set(6 * 60 + 3600)
    nudge(serving, "quiet")
    reclaimed = serving.wait(
        "quiet",
        "GPU-hours reclaimed",
        lambda s: (s.get("schedule") or {}).get("gpuHoursReclaimed", 0) > 1.9,
    )
    assert reclaimed["schedule"]["gpuHoursReclaimed"] < 2.1
    assert dt.datetime.fromisoformat(reclaimed["schedule"]["reclaimedAt"]) > dt.datetime.now(
        dt.UTC
    ) + dt.timedelta(minutes=60)

    serving.command("resume", "infs/quiet")
    back = serving.wait(
        "quiet", "woken", lambda s: s.get("phase") == "Healthy" and s.get("readyReplicas") == 2
    )
    assert back["schedule"]["held"] is False
    assert back["schedule"]["gpuHoursReclaimed"] >= reclaimed["schedule"]["gpuHoursReclaimed"]
    wait_events(serving.cluster.api, serving.ns, "quiet", "WokenUp")
