"""kopf wiring for TrainingJobs: indexes are the caches (TrainingJobs, their Jobs, their pods),
and every change to any of them queues the owning TrainingJob for reconciliation. The handlers
are stateless, so kopf writes nothing of its own onto any object."""

from __future__ import annotations

import json
from typing import Any

import kopf

from stratus.api.common import GROUP, VERSION
from stratus.api.trainingjob import PLURAL
from stratus.runner import KeyedRunner
from stratus.training.controller import Key, TrainingController
from stratus.training.labels import TRAININGJOB_LABEL
from stratus.training.views import JobView, PodView, job_view, pod_view

OWNED = {TRAININGJOB_LABEL: kopf.PRESENT}


class Wiring:
    """The controller and its queue, created at start-up; the indexes, bound on first use."""

    controller: TrainingController | None = None
    runner: KeyedRunner | None = None

    @classmethod
    def queue(cls, key: Key, kwargs: dict[str, Any]) -> None:
        controller, runner = cls.controller, cls.runner
        if controller is None or runner is None:
            raise RuntimeError("handlers ran before the operator's start-up hook")
        if controller.trainingjobs is _unbound:
            tjs, jobs, pods = (
                kwargs["trainingjob_objects"],
                kwargs["trainingjob_jobs"],
                kwargs["trainingjob_pods"],
            )
            controller.trainingjobs = lambda k: tjs.get(k, ())
            controller.jobs = lambda k: jobs.get(k, ())
            controller.pods = lambda k: pods.get(k, ())
            controller.keys = lambda: list(tjs.keys())
        runner.trigger(key)


def _unbound(_key: Key) -> tuple[()]:
    return ()


def _snapshot(body: kopf.Body) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(dict(body)))
    return copied


@kopf.index(GROUP, VERSION, PLURAL)
def trainingjob_objects(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[Key, dict[str, Any]]:
    return {(namespace or "", name): _snapshot(body)}


@kopf.index("batch", "v1", "jobs", labels=OWNED)
def trainingjob_jobs(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, JobView]:
    return {(namespace or "", labels[TRAININGJOB_LABEL]): job_view(_snapshot(body))}


@kopf.index("", "v1", "pods", labels=OWNED)
def trainingjob_pods(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, PodView]:
    return {(namespace or "", labels[TRAININGJOB_LABEL]): pod_view(_snapshot(body))}


@kopf.on.event(GROUP, VERSION, PLURAL)
async def trainingjob_changed(namespace: str | None, name: str, **kwargs: Any) -> None:
    Wiring.queue((namespace or "", name), kwargs)


@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
async def job_changed(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    Wiring.queue((namespace or "", labels[TRAININGJOB_LABEL]), kwargs)


@kopf.on.event("", "v1", "pods", labels=OWNED)
async def pod_changed(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **kwargs: Any
) -> None:
    key = (namespace or "", labels[TRAININGJOB_LABEL])
    if kwargs.get("type") == "DELETED" and Wiring.controller is not None:
        Wiring.controller.pod_deleted(key, pod_view(_snapshot(body), deleted=True))
    Wiring.queue(key, kwargs)
