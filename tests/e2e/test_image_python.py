"""The operator image's interpreter, asked in a real container: the same minor version of Python
that runs these tests (tests/unit/test_one_python.py holds the venv to it)."""

from __future__ import annotations

import sys

import yaml
from kubernetes import client

from stratus.devcluster import packaging
from tests.conftest import Cluster
from tests.support import wait_for

ASK = "import sys; print('%d.%d' % sys.version_info[:2])"


def test_the_operator_image_runs_the_python_the_tests_run_on(
    cluster: Cluster, namespace: str, real_node: str
) -> None:
    chart = yaml.safe_load((packaging.CHART / "Chart.yaml").read_text())
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "python"},
            "spec": {
                "nodeName": real_node,
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "python",
                        "image": f"ghcr.io/stratus-dev/stratus-operator:{chart['appVersion']}",
                        "imagePullPolicy": "Never",
                        "command": ["python", "-c", ASK],
                    }
                ],
            },
        },
    )

    def finished() -> str | None:
        phase = core.read_namespaced_pod("python", namespace).status.phase
        return str(phase) if phase in ("Succeeded", "Failed") else None

    assert wait_for("the python pod to finish", finished, timeout=90) == "Succeeded"
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert core.read_namespaced_pod_log("python", namespace).strip() == running
