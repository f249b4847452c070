"""kopf wiring for TrainingJobs: indexes are the caches (TrainingJobs, their Jobs, their pods, and
the Kueue Workloads of queued Jobs), and every change to any of them queues the owning TrainingJob
for reconciliation. The handlers are stateless, so kopf writes nothing of its own onto any object.

Without Kueue's CRDs in the cluster, kopf warns once that workloads cannot be served and watches
the rest; it starts watching them when the CRDs appear."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from stratus.api.common import GROUP, VERSION
from stratus.api.trainingjob import PLURAL
from stratus.budgets import handlers as budget_handlers
from stratus.training.controller import Key, TrainingController
from stratus.training.labels import TRAININGJOB_LABEL
from stratus.training.views import (
    KUEUE_GROUP,
    KUEUE_VERSION,
    JobView,
    PodView,
    WorkloadView,
    job_view,
    pod_view,
    workload_job,
    workload_view,
)
from stratus.wiring import Wiring, snapshot, unstarted

OWNED = {TRAININGJOB_LABEL: kopf.PRESENT}


def _bind(controller: TrainingController, indexes: Mapping[str, Any]) -> None:
    tjs, jobs, pods, workloads = (
        indexes["trainingjob_objects"],
        indexes["trainingjob_jobs"],
        indexes["trainingjob_pods"],
        indexes["trainingjob_workloads"],
    )
    controller.trainingjobs = lambda k: tjs.get(k, ())
    controller.jobs = lambda k: jobs.get(k, ())
    controller.pods = lambda k: pods.get(k, ())
    controller.workloads = lambda k: workloads.get(k, ())
    controller.keys = lambda: list(tjs.keys())
    controller.count = lambda: len(tjs)


WIRING: Wiring[TrainingController] = Wiring(_bind)


@kopf.index(GROUP, VERSION, PLURAL)
def trainingjob_objects(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[Key, dict[str, Any]]:
    return {(namespace or "", name): snapshot(body)}


@kopf.index("batch", "v1", "jobs", labels=OWNED)
def trainingjob_jobs(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, JobView]:
    return {(namespace or "", labels[TRAININGJOB_LABEL]): job_view(body)}


@kopf.index("batch", "v1", "jobs", labels=OWNED)
def trainingjob_job_owners(
    namespace: str | None, name: str, labels: kopf.Labels, **_: Any
) -> dict[Key, str]:
    """Job -> its TrainingJob: how a Workload, which points only to its Job, finds the
    TrainingJob to queue."""
    return {(namespace or "", name): labels[TRAININGJOB_LABEL]}


def _of_a_job(body: kopf.Body, **_: Any) -> bool:
    return workload_job(body) is not None


@kopf.index(KUEUE_GROUP, KUEUE_VERSION, "workloads", when=_of_a_job)
def trainingjob_workloads(
    body: kopf.Body, namespace: str | None, **_: Any
) -> dict[Key, WorkloadView]:
    """Workloads by (namespace, their Job's name); any Job's, since a Workload carries none of
    the Job's labels: the controller looks up only its own Jobs' names."""
    view = workload_view(body)
    return {(namespace or "", view.job): view}


@kopf.index("", "v1", "pods", labels=OWNED)
def trainingjob_pods(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, PodView]:
    return {(namespace or "", labels[TRAININGJOB_LABEL]): pod_view(body)}


@kopf.on.event(GROUP, VERSION, PLURAL)
async def trainingjob_changed(
    namespace: str | None, name: str, body: kopf.Body, **kwargs: Any
) -> None:
    # The budget gate reads the Budgets' index: bound now, even where no Budget has changed
    # since start-up (kopf fills every index before any handler runs).
    budget_handlers.WIRING.bind(kwargs)
    WIRING.queue((namespace or "", name), kwargs, urgent=unstarted(body))


@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
async def job_changed(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    WIRING.queue((namespace or "", labels[TRAININGJOB_LABEL]), kwargs)


@kopf.on.event("", "v1", "pods", labels=OWNED)
async def pod_changed(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **kwargs: Any
) -> None:
    key = (namespace or "", labels[TRAININGJOB_LABEL])
    if kwargs.get("type") == "DELETED" and WIRING.controller is not None:
        WIRING.controller.pod_deleted(key, pod_view(body, deleted=True))
    WIRING.queue(key, kwargs)


@kopf.on.event(KUEUE_GROUP, KUEUE_VERSION, "workloads", when=_of_a_job)
async def workload_changed(namespace: str | None, body: kopf.Body, **kwargs: Any) -> None:
    owners: kopf.Index[Key, str] = kwargs["trainingjob_job_owners"]
    for owner in owners.get((namespace or "", workload_job(body) or ""), ()):
        WIRING.queue((namespace or "", owner), kwargs)
