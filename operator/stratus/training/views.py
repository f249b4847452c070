"""What the TrainingJob controller needs to know of its children, read out of raw objects: the
pure half of observing. Everything here is a function of the object alone, and only reads it,
so kopf's bodies are read in place, uncopied."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from stratus.conditions import one_line, parse_time
from stratus.cost.prices import ON_DEMAND, SPOT
from stratus.training.labels import ATTEMPT_LABEL, CAPACITY_LABEL

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class CheckpointReport:
    """A checkpoint a worker reported in its termination message."""

    path: str
    step: int | None = None
    sha256: str | None = None
    # Why the program's last save did not make it (its SIGTERM save failed, say): the report
    # then names the newest checkpoint that did.
    error: str | None = None


@dataclass(frozen=True)
class JobView:
    name: str
    attempt: int
    complete: bool
    failed: bool
    failed_reason: str
    failed_message: str
    finished_at: str | None
    started_at: str | None
    active: int
    ready: int
    # Whether the Job still points to its TrainingJob (a person may have removed the reference).
    owned: bool = True
    uid: str = ""
    created_at: str | None = None
    # Held back (spec.suspend, as Kueue does until it admits the Job): no pods are due.
    suspended: bool = False
    # spot or on-demand, as the Job's capacity-type label says; None on a Job without it.
    capacity: str | None = None
    # The pod template's nodeSelector: where Kueue puts its flavor's node labels on admission
    # (with_capacity reads the capacity type from it when the label is absent).
    node_selector: tuple[tuple[str, str], ...] = ()

    @property
    def finished(self) -> bool:
        return self.complete or self.failed

    @property
    def disrupted(self) -> bool:
        """The Job failed because a pod was disrupted (its pod failure policy says so)."""
        return self.failed and "DisruptionTarget" in self.failed_message

    @property
    def exit_code(self) -> int | None:
        found = re.search(r"failed with exit code (\d+)", self.failed_message)
        return int(found.group(1)) if found else None


@dataclass(frozen=True)
class PodView:
    name: str
    attempt: int
    phase: str
    node: str | None
    deleted: bool
    disrupted: bool
    unschedulable: str | None
    exit_code: int | None
    termination_message: str | None
    # When its containers started running (never while Pending) and, once all stopped, when the
    # last one did: what GPU time is counted from.
    started_at: str | None = None
    finished_at: str | None = None
    # spot or on-demand: its capacity-type label, else what with_capacity reads from its
    # nodeSelector (a queued attempt's pods carry the flavor Kueue chose).
    capacity: str | None = None
    node_selector: tuple[tuple[str, str], ...] = ()

    @property
    def terminal(self) -> bool:
        return self.deleted or self.phase in ("Succeeded", "Failed")

    @property
    def running(self) -> bool:
        return self.phase == "Running" and not self.deleted

    @property
    def checkpoint(self) -> CheckpointReport | None:
        return parse_report(self.termination_message)


def _attempt(obj: Obj) -> int:
    try:
        return int(obj["metadata"].get("labels", {}).get(ATTEMPT_LABEL, "0"))
    except ValueError:
        return 0


def _condition(obj: Obj, kind: str) -> Obj | None:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def job_view(job: Obj) -> JobView:
    status = job.get("status") or {}
    complete = _condition(job, "Complete")
    failed = _condition(job, "Failed")
    return JobView(
        name=job["metadata"]["name"],
        attempt=_attempt(job),
        complete=complete is not None,
        failed=failed is not None,
        failed_reason=(failed or {}).get("reason", ""),
        failed_message=(failed or {}).get("message", ""),
        finished_at=status.get("completionTime") or (failed or {}).get("lastTransitionTime"),
        started_at=status.get("startTime"),
        active=int(status.get("active") or 0),
        ready=int(status.get("ready") or 0),
        owned=_owned_by(job, "TrainingJob"),
        uid=str(job["metadata"].get("uid") or ""),
        created_at=job["metadata"].get("creationTimestamp"),
        suspended=bool((job.get("spec") or {}).get("suspend")),
        capacity=job["metadata"].get("labels", {}).get(CAPACITY_LABEL),
        node_selector=_selector(((job.get("spec") or {}).get("template") or {}).get("spec")),
    )


def _selector(pod_spec: Obj | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(((pod_spec or {}).get("nodeSelector") or {}).items()))


V = TypeVar("V", "JobView", "PodView")


def with_capacity(view: V, label: str, spot_value: str) -> V:
    """The view with its capacity type read from its nodeSelector when no label named it (the
    attempt of a queued TrainingJob, whose flavor Kueue chose): spot when the spot label has its
    spot value, on-demand when it has another; unknown (None) without it."""
    if view.capacity is not None:
        return view
    selected = dict(view.node_selector).get(label)
    if selected is None:
        return view
    return dataclasses.replace(view, capacity=SPOT if selected == spot_value else ON_DEMAND)


# The Workloads Kueue makes for queued Jobs (one per Job, owned by it).
KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_VERSION = "v1beta2"


@dataclass(frozen=True)
class WorkloadView:
    """What Kueue says of an attempt's Job: whether it holds quota, and whether it was evicted
    (preempted by a workload of higher priority, say) after it did."""

    name: str
    job: str
    admitted: bool
    evicted: bool
    # Kueue's reason and message: the eviction's, else why it waits (QuotaReserved False).
    reason: str
    message: str
    cluster_queue: str | None = None
    # The owning Job's uid: a Job made again under the same name is not this Workload's.
    job_uid: str = ""


def _job_reference(workload: Obj) -> Obj | None:
    for ref in workload.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == "Job" and ref.get("apiVersion") == "batch/v1":
            return dict(ref)
    return None


def workload_job(workload: Obj) -> str | None:
    """The name of the Job that owns a Workload, or None when no Job does."""
    ref = _job_reference(workload)
    return str(ref.get("name")) if ref else None


def workload_view(workload: Obj) -> WorkloadView:
    evicted = _condition(workload, "Evicted")
    conditions = {c.get("type"): c for c in (workload.get("status") or {}).get("conditions") or []}
    waiting = conditions.get("QuotaReserved") or {}
    why = evicted or waiting
    admission = (workload.get("status") or {}).get("admission") or {}
    return WorkloadView(
        name=workload["metadata"]["name"],
        job=workload_job(workload) or "",
        admitted=_condition(workload, "Admitted") is not None,
        evicted=evicted is not None,
        reason=str(why.get("reason") or ""),
        message=one_line(str(why.get("message") or "")),
        cluster_queue=admission.get("clusterQueue"),
        job_uid=str((_job_reference(workload) or {}).get("uid") or ""),
    )


def _owned_by(obj: Obj, kind: str) -> bool:
    return any(
        ref.get("kind") == kind and ref.get("controller")
        for ref in obj["metadata"].get("ownerReferences") or []
    )


def pod_view(pod: Obj, deleted: bool = False) -> PodView:
    status = pod.get("status") or {}
    scheduled: Obj = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {}
    )
    unschedulable = None
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        unschedulable = scheduled.get("message") or "Unschedulable"
    exit_code = message = None
    containers = status.get("containerStatuses") or []
    for container in containers:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            exit_code = terminated.get("exitCode")
            message = terminated.get("message") or message
            if exit_code:
                break
    started_at, finished_at = _run_times(containers)
    return PodView(
        name=pod["metadata"]["name"],
        attempt=_attempt(pod),
        phase=status.get("phase") or "Pending",
        node=(pod.get("spec") or {}).get("nodeName"),
        deleted=deleted,
        disrupted=_condition(pod, "DisruptionTarget") is not None,
        unschedulable=unschedulable,
        exit_code=exit_code,
        termination_message=message,
        started_at=started_at,
        finished_at=finished_at,
        capacity=pod["metadata"].get("labels", {}).get(CAPACITY_LABEL),
        node_selector=_selector(pod.get("spec")),
    )


def _run_times(containers: list[Obj]) -> tuple[str | None, str | None]:
    """The earliest container start and, when every container has stopped, the latest stop.
    The API server writes these times in one RFC 3339 form, so they compare as strings."""
    states = [c.get("state") or {} for c in containers]
    started = [
        at
        for state in states
        if (at := (state.get("running") or state.get("terminated") or {}).get("startedAt"))
    ]
    stopped = [at for state in states if (at := (state.get("terminated") or {}).get("finishedAt"))]
    all_stopped = bool(states) and len(stopped) == len(states)
    return min(started, default=None), max(stopped) if all_stopped else None


def parse_report(message: str | None) -> CheckpointReport | None:
    """The checkpoint in a termination message: JSON with at least `path`; anything else (a
    stack trace, say) is not a report."""
    if not message:
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("path"), str):
        return None
    step = data.get("step")
    sha = data.get("sha256")
    error = data.get("error")
    return CheckpointReport(
        path=data["path"],
        step=step if isinstance(step, int) else None,
        sha256=sha if isinstance(sha, str) else None,
        error=one_line(error) if isinstance(error, str) and error.strip() else None,
    )


def resumable(path: str, uri: str | None) -> bool:
    """Whether a reported checkpoint is where a later attempt can read it: under the
    object-storage prefix `uri` when there is one (a local path died with its pod's scratch
    volume), a local path otherwise (a URI is no path on the claim)."""
    if uri:
        return path.startswith(uri.rstrip("/") + "/")
    return "://" not in path


@dataclass(frozen=True)
class EventView:
    """An Event the Job controller posted about a Job: whether it created a pod or failed to."""

    reason: str
    message: str
    at: dt.datetime | None


# The Job controller's Event reasons for a pod it created, or could not create.
FAILED_CREATE = "FailedCreate"
SUCCESSFUL_CREATE = "SuccessfulCreate"


def event_view(event: Obj) -> EventView:
    series = event.get("series") or {}
    at = (
        series.get("lastObservedTime")
        or event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
    )
    return EventView(
        reason=str(event.get("reason") or ""),
        message=str(event.get("message") or ""),
        at=parse_time(at) if isinstance(at, str) else None,
    )


def failed_create(events: tuple[EventView, ...]) -> str | None:
    """Why the Job controller cannot create pods, in one line: the message of its latest
    FailedCreate Event, unless a pod was created since. A tie counts as a refusal: it lasts only
    until the created pods reach the cache."""
    never = dt.datetime.min.replace(tzinfo=dt.UTC)
    failed = max(
        (e for e in events if e.reason == FAILED_CREATE), key=lambda e: e.at or never, default=None
    )
    if failed is None:
        return None
    created = max((e.at or never for e in events if e.reason == SUCCESSFUL_CREATE), default=None)
    if created is not None and created > (failed.at or never):
        return None
    # The Job controller's "Error creating: " adds nothing to the API server's own message.
    return one_line(failed.message.removeprefix("Error creating: ")) or FAILED_CREATE
