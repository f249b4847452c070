"""Objects as the API server holds them, for the dashboard's tests: a TrainingJob with a
preempted attempt, its Events and pods, and an InferenceService in a canary."""

from __future__ import annotations

import datetime as dt
from typing import Any

from stratus.api.common import API_VERSION

Obj = dict[str, Any]
T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(seconds: float) -> float:
    return (T0 + dt.timedelta(seconds=seconds)).timestamp()


def trainingjob(name: str = "llm", namespace: str = "ml", **status: Any) -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainingJob",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "creationTimestamp": at(0),
        },
        "spec": {"image": "train:1", "team": "nlp", "workers": 2, "resources": {"gpu": 4}},
        "status": status,
    }


def event(obj: Obj, seconds: float, reason: str, message: str, kind: str | None = None) -> Obj:
    meta = obj["metadata"]
    return {
        "metadata": {"name": f"{meta['name']}.{reason}.{seconds}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion", "v1"),
            "kind": kind or obj["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "type": "Warning" if reason in ("Preempted", "Restarted", "Failed") else "Normal",
        "reason": reason,
        "message": message,
        "source": {"component": "stratus-operator"},
        "lastTimestamp": at(seconds),
    }


def scheduled(namespace: str, pod: str, node: str, seconds: float) -> Obj:
    """The scheduler's Event about a pod: it outlives the pod."""
    return {
        "metadata": {"name": f"{pod}.s", "namespace": namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": namespace},
        "type": "Normal",
        "reason": "Scheduled",
        "message": f"Successfully assigned {namespace}/{pod} to {node}",
        "source": {"component": "default-scheduler"},
        "lastTimestamp": at(seconds),
    }


def pod(namespace: str, trainingjob_name: str, attempt: int, index: int, node: str) -> Obj:
    return {
        "metadata": {
            "name": f"{trainingjob_name}-{attempt}-{index}-abcde",
            "namespace": namespace,
            "labels": {
                "stratus.dev/trainingjob": trainingjob_name,
                "stratus.dev/attempt": str(attempt),
            },
        },
        "spec": {"nodeName": node},
    }


def preempted_run() -> tuple[Obj, list[Obj], list[Obj]]:
    """Attempt 1 on spot, preempted at 10 minutes (checkpoint at step 400 saved at 8 minutes);
    attempt 2 on on-demand from 11 minutes, running with a checkpoint at step 900."""
    tj = trainingjob(
        phase="Running",
        attempt=2,
        preemptions=1,
        restarts=0,
        gpuSeconds=4800,
        lastCheckpoint={"path": "/ckpt/step-000000000900", "step": 900, "time": at(1200)},
    )
    ns = "ml"
    events = [
        event(tj, 0, "AttemptStarted", "attempt 1 started on spot capacity"),
        event(
            tj,
            600,
            "Preempted",
            "attempt 1 was preempted (pod llm-1-0-xyz on node spot-a); the next attempt "
            "resumes from the latest checkpoint",
        ),
        event(tj, 660, "AttemptStarted", "attempt 2 started on on-demand capacity"),
        event(tj, 660, "Resumed", "attempt 2 resumes from /ckpt/step-000000000400"),
        scheduled(ns, "llm-1-0-xyz", "spot-a", 1),
        scheduled(ns, "llm-1-1-xyz", "spot-b", 1),
    ]
    pods = [pod(ns, "llm", 2, 0, "od-a"), pod(ns, "llm", 2, 1, "od-a")]
    return tj, events, pods


def service(name: str = "web", namespace: str = "serving", **status: Any) -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "creationTimestamp": at(0),
            "labels": {"stratus.dev/team": "search"},
        },
        "spec": {
            "image": "serve:2",
            "model": {"uri": "https://models.example.com/m.bin"},
            "rollout": {
                "strategy": "Canary",
                "steps": [
                    {"weight": 10, "pause": {"duration": "1m"}},
                    {"weight": 50, "pause": {}},
                    {"weight": 100},
                ],
                "analysis": {
                    "interval": "30s",
                    "metrics": [{"name": "error-rate", "query": "q", "max": 0.05}],
                },
            },
        },
        "status": status,
    }


def canary_status(step: int, weight: int, achieved: int, seconds: float, error_rate: float) -> Obj:
    return {
        "phase": "Progressing",
        "stableRevision": "aaa111",
        "canaryRevision": "bbb222",
        "currentStep": step,
        "canaryWeight": weight,
        "canaryWeightAchieved": achieved,
        "lastAnalysis": {
            "time": at(seconds),
            "results": [
                {
                    "name": "error-rate",
                    "value": error_rate,
                    "verdict": "Passed" if error_rate <= 0.05 else "Failed",
                }
            ],
        },
        "validation": {
            "revision": "bbb222",
            "phase": "Passed",
            "results": [
                {
                    "name": "label",
                    "source": "replay",
                    "samples": 200,
                    "agreement": 0.99,
                    "noiseFloor": 0.01,
                    "adjusted": 0.995,
                    "verdict": "Passed",
                }
            ],
        },
    }
