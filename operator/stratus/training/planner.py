"""The TrainingJob state machine, pure: what is observed (the resource, its attempt Jobs, their
pods) and the time in; the next status and the actions that get there out.

Counting is idempotent by construction: an attempt's outcome is counted in the same status write
that moves `status.attempt` past it, so a repeated or stale reconcile cannot count it twice (the
write carries the resourceVersion it was planned from)."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from stratus.api.trainingjob import TrainingJobSpec
from stratus.conditions import Event, parse_time, set_condition, timestamp
from stratus.config import CapacityConvention
from stratus.cost import usage
from stratus.cost.prices import ON_DEMAND, PriceTable
from stratus.podspec import Manifest, Owner
from stratus.training import builders
from stratus.training.views import (
    CheckpointReport,
    EventView,
    JobView,
    PodView,
    WorkloadView,
    failed_create,
    resumable,
)

Status = dict[str, Any]

# Event reasons, as the issue names them.
ATTEMPT_STARTED = "AttemptStarted"
PREEMPTED = "Preempted"
RESUMED = "Resumed"
RESTARTED = "Restarted"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
# A queueName in a cluster without Kueue.
KUEUE_ABSENT = "KueueNotInstalled"
# The Ready reason while the next attempt waits out the backoff after a failed one.
BACKING_OFF = "BackingOff"
CREATE_FAILED = "CreateFailed"
PODS_NOT_CREATED = "PodsNotCreated"
# Kueue holds the attempt's Job suspended (phase Queued), then admits it.
QUEUED = "Queued"
ADMITTED = "Admitted"
# Kueue took an attempt's quota back before any of its workers ran: it is queued again.
REQUEUED = "Requeued"

# An attempt's Job with fewer pods than workers this long (seconds) after its creation may be
# refused them: its Events are read then, and again every PODS_RECHECK seconds while it lasts,
# or every third of the time waited so far, up to PODS_RECHECK_MAX (a Job controller slow under
# a burst of Jobs is not made slower by reads).
PODS_GRACE = 2.0
PODS_RECHECK = 3.0
PODS_RECHECK_MAX = 30.0


@dataclass(frozen=True)
class Observed:
    owner: Owner
    generation: int
    spec: TrainingJobSpec | None
    spec_error: str | None
    status: Status
    jobs: tuple[JobView, ...]
    pods: tuple[PodView, ...]
    # The operator's clock (stratus.clock: tests move it), for every window decision.
    now: dt.datetime
    # Jobs this operator created that its cache has not shown yet: not to be created again.
    pending_jobs: frozenset[str] = frozenset()
    # The active Job's Events, read when the last plan asked for them (`Plan.read_events`).
    job_events: tuple[EventView, ...] | None = None
    # What holds the next attempt back, or only sends it to spot capacity (the gates').
    holds: tuple[Hold, ...] = ()
    # Whether the cluster serves Kueue's Workloads (asked only for a TrainingJob with a queue).
    kueue: bool = True
    # Kueue's Workloads of these Jobs (a TrainingJob with spec.queueName).
    workloads: tuple[WorkloadView, ...] = ()
    # Conditions the advisors report without holding anything back (a budget's estimate).
    advice: tuple[Advice, ...] = ()
    # The real time, for metering: pods' start and end times are real, so the moved clock would
    # add or take away GPU time. None: `now` (a test that does not move the clock).
    real_time: dt.datetime | None = None
    # How often a running workload's usage is refreshed (usage.refresh_interval).
    usage_refresh: float = usage.REFRESH_SECONDS

    @property
    def metered_at(self) -> dt.datetime:
        return self.real_time or self.now


@dataclass(frozen=True)
class Hold:
    """Why a new attempt may not start now (a budget spent, outside its start window); running
    attempts are never stopped by one. `spot_only`: it may start, on spot capacity only."""

    reason: str
    message: str
    # When to look again, in seconds (a window's end); None: when something changes.
    retry_after: float | None = None
    spot_only: bool = False


@dataclass(frozen=True)
class Advice:
    """A condition an advisor sets on an unfinished TrainingJob without holding it back (its
    estimated cost does not fit a budget); one Warning Event when it turns False."""

    type: str
    ok: bool
    reason: str
    message: str


@dataclass
class Plan:
    status: Status
    create: list[Manifest] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)
    delete_self: bool = False
    # Children whose owner reference a person removed: given back to the TrainingJob.
    adopt: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # Counters to add to once the status is written: attempts, preemptions, restarts, resumes.
    counts: list[str] = field(default_factory=list)
    gpu_seconds: int = 0
    requeue_after: float | None = None
    # A Job whose Events this plan needs (why its pods are missing): planned again with them.
    read_events: JobView | None = None

    def later(self, seconds: float) -> None:
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds

    @property
    def progress_only(self) -> bool:
        """Nothing is decided here, only observed: no child to create or delete, no Event."""
        return not (
            self.create or self.delete_jobs or self.delete_self or self.adopt or self.events
        )


def _newest_report(reports: list[CheckpointReport]) -> CheckpointReport | None:
    if not reports:
        return None
    return max(reports, key=lambda r: r.step if r.step is not None else -1)


def _record_checkpoint(
    status: Status, pods: tuple[PodView, ...], now: dt.datetime, uri: str | None
) -> None:
    # Only what a later attempt can resume from: with object storage, an uploaded checkpoint.
    report = _newest_report([r for p in pods if (r := p.checkpoint) and resumable(r.path, uri)])
    if report is None:
        return
    current = status.get("lastCheckpoint") or {}
    current_step = current.get("step")
    newer = not current or (
        report.step is not None and (current_step is None or report.step > current_step)
    )
    if newer and current.get("path") != report.path:
        record: dict[str, Any] = {"path": report.path, "time": timestamp(now)}
        if report.step is not None:
            record["step"] = report.step
        if report.sha256:
            record["sha256"] = report.sha256
        status["lastCheckpoint"] = record


def _lost_save(pods: list[PodView]) -> str:
    """What a worker said of a save that did not make it, for the message about its attempt."""
    for pod in pods:
        report = pod.checkpoint
        if report and report.error:
            step = f" (step {report.step})" if report.step is not None else ""
            return (
                f"; {pod.name}'s last save failed ({report.error}): "
                f"the newest safe one is {report.path}{step}"
            )
    return ""


def _gpu_seconds(spec: TrainingJobSpec, job: JobView, pods: list[PodView], now: dt.datetime) -> int:
    """GPU time of an attempt: each worker's from when its containers started running (not
    while Pending, pulling or waiting for a node) until they stopped, or until the attempt
    ended for one still stopping. A pod never seen running counts nothing."""
    ended = (parse_time(job.finished_at) if job.finished else None) or now
    seconds = 0
    for pod in pods:
        start = parse_time(pod.started_at)
        if start is not None:
            end = parse_time(pod.finished_at) or ended
            seconds += max(0, int((end - start).total_seconds()))
    return seconds * spec.resources.gpu


class _Planner:
    def __init__(
        self, obs: Observed, capacity: CapacityConvention, master_port: int, prices: PriceTable
    ) -> None:
        assert obs.spec is not None
        self.obs = obs
        self.prices = prices
        self.spec: TrainingJobSpec = obs.spec
        self.capacity = capacity
        self.master_port = master_port
        self.plan = Plan(status=copy.deepcopy(obs.status))
        # The LocalQueue, where Kueue runs: without it, a queueName labels the Job and no more.
        self.queue = self.spec.queue_name if obs.kueue else None
        self.status = self.plan.status
        # The Jobs whose GPU time this plan counted.
        self.accounted: set[str] = set()
        for key in ("attempt", "preemptions", "restarts", "retryableRestarts", "gpuSeconds"):
            self.status.setdefault(key, 0)

    # -- helpers -----------------------------------------------------------------------------
    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.plan.events.append(Event("Warning" if warning else "Normal", reason, message))
        self.status["message"] = message

    def condition(self, kind: str, state: bool, reason: str, message: str = "") -> None:
        set_condition(self.status, kind, state, reason, message, self.obs.now, self.obs.generation)

    def phase(self, phase: str, ready_reason: str, message: str = "") -> None:
        self.status["phase"] = phase
        self.condition("Ready", phase == "Running", ready_reason, message)

    def job(self, attempt: int) -> JobView | None:
        return next((j for j in self.obs.jobs if j.attempt == attempt), None)

    def pods(self, attempt: int) -> list[PodView]:
        return [p for p in self.obs.pods if p.attempt == attempt]

    def finish(self, phase: str, reason: str, message: str) -> None:
        self.phase(phase, reason, message)
        self.status["completionTime"] = timestamp(self.obs.now)
        self.condition("Complete" if phase == "Succeeded" else "Failed", True, reason, message)
        self.event(
            SUCCEEDED if phase == "Succeeded" else FAILED, message, warning=phase == "Failed"
        )
        self.status.pop("nextAttemptAt", None)
        active = self.job(self.status["attempt"])
        # Also one that ended by itself uncounted (its Job's own deadline, the same as ours).
        if active and active.name not in self.accounted:
            self.account(active)
        if active and not active.finished:
            self.plan.delete_jobs.append(active.name)

    def account(self, job: JobView) -> None:
        """Count the GPU time of an attempt that ended, or that is ended now; in the status
        write that moves past the attempt, so never twice."""
        self.accounted.add(job.name)
        seconds = _gpu_seconds(self.spec, job, self.pods(job.attempt), self.obs.metered_at)
        self.plan.gpu_seconds += seconds
        self.status["gpuSeconds"] += seconds
        usage.settle(
            self.status,
            usage.GpuSeconds.of(self.capacity_type(job), seconds),
            self.prices,
            self.spec.resources.gpu_type,
        )

    def capacity_type(self, job: JobView) -> str:
        # Unknown (a flavor whose node labels do not name it): on-demand, the upper bound of
        # the cost; spot only where the Job, its flavor or its pods say spot.
        return job.capacity or ON_DEMAND

    def meter(self) -> None:
        """status.usage: ended attempts, and the running one up to now."""
        running = usage.GpuSeconds()
        active = self.job(self.status["attempt"])
        now = self.obs.metered_at
        if active and not active.finished and active.name not in self.plan.delete_jobs:
            seconds = _gpu_seconds(self.spec, active, self.pods(active.attempt), now)
            running = usage.GpuSeconds.of(self.capacity_type(active), seconds)
        wait = usage.meter(
            self.obs.status.get("usage"),
            self.status,
            running,
            self.prices,
            self.spec.resources.gpu_type,
            now,
            self.obs.usage_refresh,
        )
        if wait is not None:
            self.plan.later(wait)

    def back_off(self) -> int:
        """Hold the next attempt back after a failed one: the wait doubles with each failure,
        retryable or not, up to the cap. Its seconds."""
        retry = self.spec.retry
        failures = self.status["restarts"] + self.status["retryableRestarts"]
        delay: int = min(
            retry.max_backoff_seconds, retry.backoff_seconds * 2 ** min(failures - 1, 30)
        )
        if delay > 0:
            self.status["nextAttemptAt"] = timestamp(self.obs.now + dt.timedelta(seconds=delay))
        return delay

    def backing_off(self, attempt: int) -> bool:
        """Whether the attempt waits out the backoff after a failed one (and says until when)."""
        due = self.status.get("nextAttemptAt")
        at = parse_time(due)
        left = (at - self.obs.now).total_seconds() if at else 0.0
        if left <= 0:
            return False
        message = f"attempt {attempt} starts at {due}, after a backoff"
        self.phase("Restarting", BACKING_OFF, message)
        self.condition("Scheduled", False, BACKING_OFF, message)
        self.plan.later(left)
        return True

    # -- the machine ---------------------------------------------------------------------------
    def run(self) -> Plan:
        self.status["observedGeneration"] = self.obs.generation
        self.plan.adopt = [j.name for j in self.obs.jobs if not j.owned]
        _record_checkpoint(self.status, self.obs.pods, self.obs.now, self.spec.checkpoint_uri)
        if self.status.get("phase") in ("Succeeded", "Failed"):
            self.after_finish()
            return self.plan
        for advice in self.obs.advice:
            turned = _condition_of(self.obs.status, advice.type).get("status") != "False"
            self.condition(advice.type, advice.ok, advice.reason, advice.message)
            if not advice.ok and turned:
                self.plan.events.append(Event("Warning", advice.reason, advice.message))
        if self.past_deadline():
            return self.plan
        if self.spec.suspend:
            self.suspend()
            return self.plan
        if self.status["attempt"] == 0:
            self.status["attempt"] = 1
        # At most two steps: count the ended attempt, then start the next one.
        for _ in range(2):
            if not self.step():
                break
        return self.plan

    def after_finish(self) -> None:
        ttl = self.spec.ttl_seconds_after_finished
        finished = parse_time(self.status.get("completionTime"))
        if ttl is None or finished is None:
            return
        due = (finished - self.obs.now).total_seconds() + ttl
        if due <= 0:
            self.plan.delete_self = True
        else:
            self.plan.requeue_after = due

    def past_deadline(self) -> bool:
        limit = self.spec.active_deadline_seconds
        started = parse_time(self.status.get("startTime"))
        if limit is None or started is None:
            return False
        left = (started - self.obs.now).total_seconds() + limit
        if left > 0:
            self.plan.requeue_after = left
            return False
        self.finish(
            "Failed",
            "DeadlineExceeded",
            f"activeDeadlineSeconds ({limit}s) passed across all attempts",
        )
        return True

    def suspend(self) -> None:
        attempt = self.status["attempt"]
        job = self.job(attempt)
        if job and not job.finished:
            # The active attempt ends uncounted; resuming starts the next one.
            self.plan.delete_jobs.append(job.name)
            self.account(job)
            self.status["attempt"] = attempt + 1
            self.event("Suspended", f"attempt {attempt} stopped: the TrainingJob is suspended")
        self.status.pop("activeJob", None)
        # Resuming is a person's decision: it does not wait out a backoff.
        self.status.pop("nextAttemptAt", None)
        self.phase("Suspended", "Suspended", "suspended by spec.suspend")

    def step(self) -> bool:
        """Advance once; True when the plan moved to a new attempt and may advance again."""
        attempt = self.status["attempt"]
        job = self.job(attempt)
        if job is None:
            self.start(attempt)
            return False
        if job.complete:
            self.account(job)
            self.finish("Succeeded", "Succeeded", f"attempt {attempt} completed")
            return False
        if self.queue and self.evicted(attempt, job):
            return self.kueue_evicted(attempt, job)
        if job.failed:
            return self.attempt_failed(attempt, job)
        self.observe_running(attempt, job)
        return False

    def evicted(self, attempt: int, job: JobView) -> bool:
        """Whether Kueue took the attempt's quota back: its Workload says Evicted, or its Job
        was suspended again after its pods ran (a Workload not seen yet)."""
        workload = self.workload(job)
        if workload is not None:
            return workload.evicted
        return job.suspended and any(p.started_at for p in self.pods(attempt))

    def kueue_evicted(self, attempt: int, job: JobView) -> bool:
        """A Kueue eviction (preempted by a workload of higher priority, say) ends the attempt
        as a preemption, not a failure: the next attempt resumes, queued again."""
        workload = self.workload(job)
        why = f"{workload.reason}: {workload.message}" if workload else "its Job was suspended"
        self.plan.delete_jobs.append(job.name)
        if not any(p.started_at for p in self.pods(attempt)):
            self.requeued(attempt, why)
            return False
        self.account(job)
        return self.preempted(attempt, f" by Kueue ({why})", self.pods(attempt))

    def requeued(self, attempt: int, why: str) -> None:
        """Evicted before any worker ran (its pods not ready in time, or preempted while they
        were pending): queue contention, no preemption. The same attempt is queued again in a
        new Job; it stays recorded (activeJob), so it is not counted again."""
        message = (
            f"attempt {attempt} is queued again in LocalQueue {self.queue}: "
            f"Kueue requeued it before it ran ({why})"
        )
        previous = _condition_of(self.obs.status, "Ready")
        self.status["phase"] = QUEUED
        self.condition("Ready", False, QUEUED, message)
        self.condition("Scheduled", False, QUEUED, message)
        self.status["message"] = message
        if previous.get("message") != message:
            self.plan.events.append(Event("Normal", REQUEUED, message))

    def start(self, attempt: int) -> None:
        name = builders.job_name(self.obs.owner.name, attempt)
        # Created a moment ago, so not in the cache yet; recorded too, unless the status write
        # after it lost a conflict.
        created = name in self.obs.pending_jobs
        # Started and counted already: its Job vanished (deleted by hand, or gone before the
        # cache saw it) and is made again, as the same attempt.
        recorded = self.status.get("activeJob") == name
        if created and recorded:
            return
        if not created and self.backing_off(attempt):
            return
        if not created and self.held(attempt):
            return
        self.status.pop("nextAttemptAt", None)
        # The deadline counts from the first attempt that started, not from a wait before it (a
        # queued one starts when Kueue admits it).
        if not self.queue:
            self.status.setdefault("startTime", timestamp(self.obs.now))
        older_alive = [p for p in self.obs.pods if p.attempt < attempt and not p.terminal]
        if older_alive and not created:
            # A new attempt starts only once the last one's pods have stopped (and saved).
            self.phase(
                "Restarting",
                "WaitingForPreviousAttempt",
                f"waiting for {len(older_alive)} pod(s) of the previous attempt to stop",
            )
            return
        preemptions = self.status["preemptions"]
        fallback = self.spec.spot.fallback_to_on_demand_after
        on_spot = self.spec.spot.enabled and (fallback is None or preemptions < fallback)
        spot_only = next((h for h in self.obs.holds if h.spot_only), None)
        if spot_only and not on_spot:
            on_spot = True
            self.event(spot_only.reason, f"attempt {attempt} runs on spot: {spot_only.message}")
        resume = (self.status.get("lastCheckpoint") or {}).get("path")
        if resume and not resumable(resume, self.spec.checkpoint_uri):
            resume = None  # recorded before the checkpoint location was edited
        # Queued on spot, Kueue's flavors choose spot or on-demand, unless a gate allows spot only.
        flexible = bool(self.queue) and on_spot and spot_only is None
        plan = builders.AttemptPlan(
            attempt, resume, on_spot, self.deadline_left(), flexible, queued=bool(self.queue)
        )
        job = builders.build_job(self.obs.owner, self.spec, plan, self.capacity, self.master_port)
        if not created:
            if self.spec.workers > 1:
                self.plan.create.append(
                    builders.build_service(self.obs.owner, self.spec, self.master_port)
                )
            self.plan.create.append(job)
        self.plan.delete_jobs += [j.name for j in self.obs.jobs if j.attempt < attempt]
        self.status["activeJob"] = job["metadata"]["name"]
        if not recorded:
            self.announce(plan)
        if self.queue:
            self.queued(attempt, None)
            return
        self.phase(
            "Pending" if attempt == 1 else "Restarting",
            "AttemptPending",
            f"attempt {attempt} is starting",
        )
        self.condition("Scheduled", False, "Pending", "waiting for the scheduler")

    def announce(self, attempt: builders.AttemptPlan) -> None:
        """Count a new attempt and say where it runs, once."""
        number, resume = attempt.number, attempt.resume_from
        self.plan.counts.append("attempts")
        flexible = attempt.flexible
        where = "spot or on-demand" if flexible else "spot" if attempt.on_spot else "on-demand"
        chosen = ", whichever Kueue's flavors admit it on" if flexible else ""
        self.event(ATTEMPT_STARTED, f"attempt {number} started on {where} capacity{chosen}")
        if self.spec.queue_name and not self.queue:
            self.event(
                KUEUE_ABSENT,
                f"queueName {self.spec.queue_name} is not used: the cluster serves no Kueue "
                "Workloads, so the attempt runs without queueing",
                warning=True,
            )
        if resume and number > 1:
            self.plan.counts.append("resumes")
            self.event(RESUMED, f"attempt {number} resumes from {resume}")

    def deadline_left(self) -> int | None:
        """Seconds of activeDeadlineSeconds left for a new attempt: all of them before the first
        attempt started."""
        if self.spec.active_deadline_seconds is None:
            return None
        started = parse_time(self.status.get("startTime")) or self.obs.now
        return int((started - self.obs.now).total_seconds()) + self.spec.active_deadline_seconds

    def workload(self, job: JobView) -> WorkloadView | None:
        return next(
            (
                w
                for w in self.obs.workloads
                if w.job == job.name and (not w.job_uid or not job.uid or w.job_uid == job.uid)
            ),
            None,
        )

    def queued(self, attempt: int, workload: WorkloadView | None) -> None:
        """Kueue holds the attempt's Job suspended: why, in Kueue's words; one Event when the
        attempt starts to wait."""
        where = f"LocalQueue {self.queue}"
        if workload is None:
            why = "waiting for Kueue to make its Workload"
        elif workload.admitted:
            why = f"admitted to ClusterQueue {workload.cluster_queue}, starting"
        else:
            why = workload.message or workload.reason or "waiting for quota"
        message = f"attempt {attempt} is queued in {where}: {why}"
        previous = _condition_of(self.obs.status, "Ready")
        self.status["phase"] = QUEUED
        self.condition("Ready", False, QUEUED, message)
        self.condition("Scheduled", False, QUEUED, message)
        self.status["message"] = message
        waiting = f"attempt {attempt} is queued"
        if previous.get("reason") != QUEUED or not previous.get("message", "").startswith(waiting):
            self.plan.events.append(Event("Normal", QUEUED, message))

    def held(self, attempt: int) -> bool:
        """Whether a gate holds the attempt back; says why, once as an Event."""
        hold = next((h for h in self.obs.holds if not h.spot_only), None)
        if hold is None:
            return False
        message = f"attempt {attempt} waits: {hold.message}"
        previous = _condition_of(self.obs.status, "Ready")
        self.status["phase"] = "Waiting"
        self.condition("Ready", False, hold.reason, message)
        self.condition("Scheduled", False, hold.reason, message)
        self.status["message"] = message
        if (previous.get("reason"), previous.get("message")) != (hold.reason, message):
            self.plan.events.append(Event("Warning", hold.reason, message))
        if hold.retry_after is not None:
            self.plan.later(max(1.0, hold.retry_after))
        return True

    def attempt_failed(self, attempt: int, job: JobView) -> bool:
        pods = self.pods(attempt)
        self.account(job)
        disrupted = [p for p in pods if p.disrupted]
        if job.disrupted or disrupted:
            where = f" (pod {disrupted[0].name} on node {disrupted[0].node})" if disrupted else ""
            return self.preempted(attempt, where, pods)
        failed = next((p for p in pods if p.exit_code), None)
        code = failed.exit_code if failed else job.exit_code
        detail = f"exit code {code}" if code is not None else f"{job.failed_reason}"
        if failed and failed.termination_message and not failed.checkpoint:
            detail += f": {failed.termination_message.strip()[:512]}"
        detail += _lost_save(pods)
        if code is not None and code in self.spec.retry.retryable_exit_codes:
            self.status["retryableRestarts"] += 1
            limit = self.spec.retry.max_retryable_restarts
            if self.status["retryableRestarts"] > limit:
                self.finish(
                    "Failed",
                    "RetryableRestartLimitExceeded",
                    f"attempt {attempt} failed with retryable {detail}; more than "
                    f"maxRetryableRestarts ({limit}) retryable restarts",
                )
                return False
            self.plan.counts.append("retryable_restarts")
            count = f"retryable restart {self.status['retryableRestarts']} of {limit}"
            detail = f"retryable {detail}"
        else:
            self.status["restarts"] += 1
            limit = self.spec.retry.max_restarts
            if self.status["restarts"] > limit:
                self.finish(
                    "Failed",
                    "RestartLimitExceeded",
                    f"attempt {attempt} failed with {detail}; more than maxRestarts ({limit}) "
                    "restarts",
                )
                return False
            self.plan.counts.append("restarts")
            count = f"restart {self.status['restarts']} of {limit}"
        delay = self.back_off()
        after = f"; attempt {attempt + 1} starts in {delay}s" if delay else ""
        self.event(RESTARTED, f"attempt {attempt} failed with {detail}; {count}{after}", True)
        self.status["attempt"] = attempt + 1
        return True

    def preempted(self, attempt: int, where: str, pods: list[PodView]) -> bool:
        """Count the attempt as preempted; True when the next attempt may start."""
        self.status["preemptions"] += 1
        limit = self.spec.spot.max_preemptions
        if self.status["preemptions"] > limit:
            self.finish(
                "Failed",
                "PreemptionLimitExceeded",
                f"attempt {attempt} was preempted{where}: more than "
                f"maxPreemptions ({limit}) preemptions",
            )
            return False
        self.plan.counts.append("preemptions")
        self.event(
            PREEMPTED,
            f"attempt {attempt} was preempted{where}; the next attempt "
            f"resumes from the latest checkpoint{_lost_save(pods)}",
            warning=True,
        )
        self.status["attempt"] = attempt + 1
        return True

    def observe_running(self, attempt: int, job: JobView) -> None:
        if job.suspended and self.queue:
            # Queued for hours perhaps: a hold that came since withdraws it before it runs. The
            # attempt stays recorded (activeJob), so making it again counts nothing twice.
            if not any(p.started_at for p in self.pods(attempt)) and self.held(attempt):
                self.plan.delete_jobs.append(job.name)
                return
            self.queued(attempt, self.workload(job))
            return
        self.status.setdefault("startTime", timestamp(self.obs.now))
        if self.queue and _reason(self.obs.status, "Ready") == QUEUED:
            workload = self.workload(job)
            queue = f" to ClusterQueue {workload.cluster_queue}" if workload else ""
            where = f" on {job.capacity} capacity" if job.capacity else ""
            self.plan.events.append(
                Event("Normal", ADMITTED, f"attempt {attempt} admitted by Kueue{queue}{where}")
            )
        pods = self.pods(attempt)
        refused_before = _reason(self.obs.status, "Ready") == PODS_NOT_CREATED
        if self.pods_missing(job, pods):
            if self.obs.job_events is None:
                self.plan.read_events = job
                if refused_before:
                    return  # the last answer stands until the Events are read
            elif refusal := failed_create(self.obs.job_events):
                self.pods_not_created(attempt, refusal)
                return
        if refused_before:
            # The pods came, or the refusal ended: back to waiting for them.
            self.condition("Scheduled", False, "Pending", "waiting for the scheduler")
            self.status["message"] = f"attempt {attempt} is starting"
        waiting = next((p.unschedulable for p in pods if p.unschedulable), None)
        if waiting:
            self.condition("Scheduled", False, "Unschedulable", waiting)
            self.status["message"] = f"attempt {attempt} cannot be scheduled: {waiting}"
        elif pods and all(p.node for p in pods) and len(pods) >= self.spec.workers:
            self.condition("Scheduled", True, "Scheduled", "every worker has a node")
        if job.ready > 0 or any(p.running for p in pods):
            self.phase("Running", "AttemptRunning", f"attempt {attempt} is running")
            self.status["message"] = f"attempt {attempt} is running"
        else:
            self.phase(
                "Pending" if attempt == 1 else "Restarting",
                "AttemptPending",
                self.status.get("message", ""),
            )

    def pods_missing(self, job: JobView, pods: list[PodView]) -> bool:
        """Whether the attempt's Job has had fewer pods than workers for longer than the Job
        controller takes to create them: then they may be refused (admission, quota, a missing
        PriorityClass), which only the Job's Events say."""
        created = parse_time(job.created_at)
        present = [p for p in pods if not p.deleted]
        if job.suspended or created is None or len(present) >= self.spec.workers:
            return False
        waited = (self.obs.now - created).total_seconds()
        if waited < PODS_GRACE:
            self.plan.later(PODS_GRACE - waited)
            return False
        self.plan.later(min(PODS_RECHECK_MAX, max(PODS_RECHECK, waited / 3)))
        return True

    def pods_not_created(self, attempt: int, refusal: str) -> None:
        message = f"attempt {attempt} cannot create its pods: {refusal}"
        self.phase("Pending" if attempt == 1 else "Restarting", PODS_NOT_CREATED, message)
        self.condition("Scheduled", False, PODS_NOT_CREATED, message)
        self.status["message"] = message
        previous = _condition_of(self.obs.status, "Ready")
        if (previous.get("reason"), previous.get("message")) != (PODS_NOT_CREATED, message):
            self.event(PODS_NOT_CREATED, message, warning=True)


def _condition_of(status: Status, kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def _reason(status: Status, kind: str) -> str | None:
    return _condition_of(status, kind).get("reason")


def rejected(obs: Observed, why: str) -> Status:
    """The status to show when the API server refuses a child the plan needs."""
    status = copy.deepcopy(obs.status)
    set_condition(status, "Ready", False, CREATE_FAILED, why, obs.now, obs.generation)
    status["observedGeneration"] = obs.generation
    status["message"] = why
    return status


def plan(
    obs: Observed,
    capacity: CapacityConvention,
    master_port: int = 29500,
    prices: PriceTable | None = None,
) -> Plan:
    """The next status and actions for one TrainingJob."""
    if obs.spec is None:
        status = copy.deepcopy(obs.status)
        set_condition(
            status,
            "Ready",
            False,
            "InvalidSpec",
            obs.spec_error or "invalid spec",
            obs.now,
            obs.generation,
        )
        status["observedGeneration"] = obs.generation
        status["message"] = f"invalid spec: {obs.spec_error}"
        return Plan(status=status)
    planner = _Planner(obs, capacity, master_port, prices or PriceTable())
    result = planner.run()
    planner.meter()
    return result
