"""The validator Job of an InferenceService's validation stage, pure: one pod in the tenant's
namespace, running the operator's image, that replays a recorded request set against the
candidate and the baseline and then serves as the shadow proxy in front of the stable revision;
and what the controller reads back of it (its report, from the pod's status).

Why a pod in the tenant's namespace, and a report through the termination message: the operator
never calls a URL a tenant wrote (an external baseline, a hook) and needs no network path to
tenant pods; the baseline's credentials reach that pod only. The report container waits for the
report file and ends with it as its termination message, which the pod's status then carries,
while the proxy container keeps serving until the Service no longer points to it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stratus import podspec
from stratus.api.common import duration_seconds
from stratus.api.inferenceservice import InferenceServiceSpec
from stratus.api.validation import (
    CA_KEY,
    PASSWORD_KEY,
    TOKEN_KEY,
    USERNAME_KEY,
    Replay,
    Validation,
)
from stratus.conditions import one_line
from stratus.podspec import MANAGED_BY_LABEL, MANAGER, Manifest, Owner
from stratus.serving.builders import (
    DRAIN_SECONDS,
    STAGING_RESOURCES,
    TERMINATION_MESSAGE_PATH,
    deployment_name,
)
from stratus.serving.labels import REVISION_LABEL, VALIDATOR_LABEL
from stratus.storage import staged_name
from stratus.storage.redact import redact

VALIDATE = "validate"
REPORT = "report"
ADMIN_PORT = 9901
REPORT_DIR = "/var/run/stratus/report"
REPORT_FILE = f"{REPORT_DIR}/report.json"
REQUESTS_DIR = "/var/run/stratus/requests"
BASELINE_CA_DIR = "/etc/stratus/baseline-ca"
REPORT_VOLUME = "stratus-report"
REQUESTS_VOLUME = "stratus-requests"
BASELINE_CA_VOLUME = "stratus-baseline-ca"
# The proxy carries live traffic: enough CPU to add little latency, no GPU.
VALIDATOR_RESOURCES = {
    "requests": {"cpu": "250m", "memory": "128Mi"},
    "limits": {"memory": "512Mi"},
}
RELAY_RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}
# Started after the stage's own timeout, the pod gets this long to start and report.
START_ALLOWANCE = 300
MAX_FAILURE_MESSAGE = 512


def job_name(owner: Owner, canary: str) -> str:
    """Named as the candidate's Deployment: a Job is another kind, and the name fits 63."""
    return deployment_name(owner, canary)


def proxy_selector(owner: Owner, canary: str) -> dict[str, str]:
    """The proxy of this candidate only: a previous candidate's may still be draining, and the
    Service publishes the addresses it selects whether ready or terminating."""
    return {VALIDATOR_LABEL: owner.name, REVISION_LABEL: canary}


def _requests_file(validation: Validation) -> str | None:
    replay = validation.replay
    if replay is None:
        return None
    if replay.config_map is not None:
        return f"{REQUESTS_DIR}/{replay.config_map.key}"
    return f"{REQUESTS_DIR}/{staged_name(replay.uri or '')}"


def _baseline_env(validation: Validation) -> list[Manifest]:
    secret = validation.baseline.credentials_secret
    if secret is None:
        return []
    return [
        {
            "name": f"STRATUS_BASELINE_{key.upper()}",
            "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}},
        }
        for key in (TOKEN_KEY, USERNAME_KEY, PASSWORD_KEY)
    ]


def build_job(
    owner: Owner,
    spec: InferenceServiceSpec,
    canary: str,
    image: str,
    candidate_url: str,
    stable_url: str,
) -> Manifest:
    """The validator Job for candidate `canary`. `candidate_url` and `stable_url` are the base
    URLs (http://address:port) of the two revisions' Services."""
    validation = spec.rollout.validation
    assert validation is not None
    labels = {VALIDATOR_LABEL: owner.name, REVISION_LABEL: canary, MANAGED_BY_LABEL: MANAGER}
    env: list[Manifest] = [
        {
            "name": "STRATUS_VALIDATION",
            "value": validation.model_dump_json(by_alias=True, exclude_none=True),
        },
        {"name": "STRATUS_CANDIDATE_URL", "value": candidate_url},
        {"name": "STRATUS_STABLE_URL", "value": stable_url},
        {"name": "STRATUS_LISTEN_PORT", "value": str(spec.port)},
        {"name": "STRATUS_ADMIN_PORT", "value": str(ADMIN_PORT)},
        {"name": "STRATUS_REPORT", "value": REPORT_FILE},
        *_baseline_env(validation),
    ]
    mounts: list[Manifest] = [{"name": REPORT_VOLUME, "mountPath": REPORT_DIR}]
    volumes: list[Manifest] = [{"name": REPORT_VOLUME, "emptyDir": {"sizeLimit": "1Mi"}}]
    init: list[Manifest] = []
    requests = _requests_file(validation)
    if requests is not None:
        env.append({"name": "STRATUS_REQUESTS", "value": requests})
        mounts.append({"name": REQUESTS_VOLUME, "mountPath": REQUESTS_DIR, "readOnly": True})
        replay = validation.replay
        assert replay is not None
        if replay.config_map is not None:
            volumes.append({"name": REQUESTS_VOLUME, "configMap": {"name": replay.config_map.name}})
        else:
            volumes.append({"name": REQUESTS_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}})
            init.append(_fetch_requests(replay.uri or "", replay.sha256 or "", image, replay))
    if validation.baseline.ca_config_map:
        volume, mount = podspec.config_map_file(
            BASELINE_CA_VOLUME, validation.baseline.ca_config_map, CA_KEY, BASELINE_CA_DIR
        )
        volumes.append(volume)
        mounts.append(mount)
        env.append({"name": "STRATUS_BASELINE_CA", "value": f"{BASELINE_CA_DIR}/{CA_KEY}"})
    validate: Manifest = {
        "name": VALIDATE,
        "image": image,
        "command": ["python", "-m", "stratus.validation", "run"],
        "env": env,
        "ports": [
            {"name": "http", "containerPort": spec.port},
            {"name": "admin", "containerPort": ADMIN_PORT},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": "admin"},
            "periodSeconds": 2,
            "failureThreshold": 1,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": DRAIN_SECONDS}}},
        "resources": VALIDATOR_RESOURCES,
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    relay: Manifest = {
        "name": REPORT,
        "image": image,
        "command": [
            "python",
            "-m",
            "stratus.validation",
            "relay",
            "--report",
            REPORT_FILE,
            "--to",
            TERMINATION_MESSAGE_PATH,
        ],
        "resources": RELAY_RESOURCES,
        "volumeMounts": [{"name": REPORT_VOLUME, "mountPath": REPORT_DIR, "readOnly": True}],
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "File",
    }
    pod_spec: Manifest = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": DRAIN_SECONDS + 10,
        "containers": [validate, relay],
        "volumes": volumes,
    }
    if init:
        pod_spec["initContainers"] = init
    timeout = duration_seconds(validation.timeout) or 0.0
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(owner, canary),
            "namespace": owner.namespace,
            "labels": labels,
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(timeout) + START_ALLOWANCE,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": podspec.restricted_defaults(pod_spec),
            },
        },
    }


def _fetch_requests(uri: str, sha256: str, image: str, replay: Replay) -> Manifest:
    init: Manifest = {
        "name": "fetch-requests",
        "image": image,
        "command": [
            "python",
            "-m",
            "stratus.storage",
            "fetch",
            "--uri",
            uri,
            "--dest",
            REQUESTS_DIR,
            "--sha256",
            sha256,
            "--max-size",
            "1Gi",
        ],
        "volumeMounts": [{"name": REQUESTS_VOLUME, "mountPath": REQUESTS_DIR}],
        "resources": STAGING_RESOURCES,
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "File",
    }
    if env := podspec.object_store_env(replay.endpoint, replay.credentials_secret):
        init["env"] = env
    return init


@dataclass(frozen=True)
class ValidatorView:
    """What the controller reads of a validator pod: whether its proxy serves, its report once
    written, and why it failed when it ended without one."""

    revision: str
    ready: bool
    report: dict[str, Any] | None = None
    failure: str | None = None
    # Its Job already deleted: nothing more to remove while the pod drains.
    terminating: bool = False


def validator_view(pod: Mapping[str, Any]) -> ValidatorView:
    status = pod.get("status") or {}
    containers = {c.get("name"): c for c in status.get("containerStatuses") or []}
    revision = (pod.get("metadata") or {}).get("labels", {}).get(REVISION_LABEL, "")
    ready = bool((containers.get(VALIDATE) or {}).get("ready"))
    ended = ((containers.get(REPORT) or {}).get("state") or {}).get("terminated") or {}
    report: dict[str, Any] | None = None
    if ended.get("exitCode") == 0 and ended.get("message"):
        try:
            found = json.loads(ended["message"])
        except ValueError:
            found = None
        report = found if isinstance(found, dict) else None
    failure = None
    if report is None:
        failure = _failure(status, containers)
    terminating = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
    return ValidatorView(revision, ready, report, failure, terminating)


def _failure(status: Mapping[str, Any], containers: Mapping[str, Any]) -> str | None:
    """Why the pod ended (or cannot run) without a report: a failed init container (the request
    set's download), the validate container's last line, or the pod's own reason."""
    for init in status.get("initContainerStatuses") or []:
        ended = (init.get("state") or {}).get("terminated") or {}
        if ended.get("exitCode"):
            return _line(f"fetching the request set: {ended.get('message') or ended.get('reason')}")
    ended = ((containers.get(VALIDATE) or {}).get("state") or {}).get("terminated") or {}
    if ended.get("exitCode"):
        lines = (ended.get("message") or "").strip().splitlines()
        return _line(lines[-1] if lines else f"exit code {ended['exitCode']}")
    if status.get("phase") == "Failed":
        return _line(status.get("message") or status.get("reason") or "the validator pod failed")
    return None


def _line(text: str) -> str:
    return redact(one_line(text))[:MAX_FAILURE_MESSAGE]


# What of a report the status keeps, each bounded: the report itself fits the kubelet's 4096
# bytes, but it comes from a pod in the tenant's namespace, so it is checked like input.
MAX_REASON = 1024
MAX_EXAMPLES = 5
RESULT_TEXT = ("name", "source", "verdict")
RESULT_NUMBERS = ("samples", "agreement", "noiseFloor", "adjusted")


def record(into: dict[str, Any], report: Mapping[str, Any]) -> None:
    """Copies a validator's report into status.validation: the reason, the figures per
    comparator, the proxy's overhead, the request counts and a few examples."""
    into["reason"] = _line(str(report.get("reason") or ""))[:MAX_REASON]
    results = []
    for found in report.get("results") or []:
        if not isinstance(found, Mapping):
            continue
        kept: dict[str, Any] = {
            key: str(found[key])[:63] for key in RESULT_TEXT if isinstance(found.get(key), str)
        }
        kept.update({key: found[key] for key in RESULT_NUMBERS if _number(found.get(key))})
        if kept.get("verdict") in ("Pending", "Passed", "Failed") and kept.get("source") in (
            "replay",
            "shadow",
        ):
            results.append(kept)
    into["results"] = results[:32]
    overhead = report.get("shadowOverheadMs")
    if isinstance(overhead, Mapping):
        into["shadowOverheadMs"] = {
            k: float(v) for k, v in overhead.items() if k in ("p50", "p99") and _number(v)
        }
    requests = report.get("requests")
    if isinstance(requests, Mapping):
        into["requests"] = {
            k: int(v) for k, v in requests.items() if k in ("replay", "shadow") and _number(v)
        }
    examples = report.get("examples")
    if isinstance(examples, list):
        into["examples"] = [e for e in examples if isinstance(e, Mapping)][:MAX_EXAMPLES]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
