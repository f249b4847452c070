"""What the CLI prints, from objects as the API server returns them (plain dicts, camelCase):
tables, a TrainingJob's attempt timeline, a rollout's state, and how a rollout ended. Pure: no
cluster access, so every line is unit-tested."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from stratus.api import inferenceservice, trainingjob
from stratus.api.schedule import StartWindow
from stratus.schedules import windows
from stratus.serving.labels import (
    ABORT_ANNOTATION,
    PROMOTE_ANNOTATION,
    PROMOTE_FULL_ANNOTATION,
    RETRY_ANNOTATION,
    REVISION_LABEL,
)
from stratus.training.labels import ATTEMPT_LABEL

Obj = dict[str, Any]
OUTPUTS = ("text", "json", "yaml")


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short: str

    @property
    def singular(self) -> str:
        return self.kind.lower()


TRAININGJOB = Kind(trainingjob.KIND, trainingjob.PLURAL, "tj")
INFERENCESERVICE = Kind(inferenceservice.KIND, inferenceservice.PLURAL, "infs")
KINDS = (TRAININGJOB, INFERENCESERVICE)


def kind_named(text: str) -> Kind:
    """The kind a user means by a name kubectl would take: singular, plural or short name,
    in any case, with or without the group (`tj`, `TrainingJob`, `trainingjobs.stratus.dev`)."""
    word = text.lower().split(".", 1)[0]
    for kind in KINDS:
        if word in (kind.singular, kind.plural, kind.short):
            return kind
    raise ValueError(f"unknown kind {text!r}: trainingjob (tj) or inferenceservice (infs)")


# The commands a person gives a rollout, as annotations (`stratus promote|abort|retry`).
COMMANDS = (PROMOTE_ANNOTATION, PROMOTE_FULL_ANNOTATION, ABORT_ANNOTATION, RETRY_ANNOTATION)
# Exit codes of `stratus rollout status`.
HEALTHY, DEGRADED, PAUSED, NOT_SETTLED = 0, 1, 2, 3


def dump(data: Any, output: str) -> str:
    """JSON or YAML, as `kubectl -o` prints them."""
    if output == "json":
        return json.dumps(data, indent=2) + "\n"
    return str(yaml.safe_dump(data, sort_keys=False))


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns left-aligned, three spaces apart (kubectl's layout)."""
    lines = [list(headers), *(list(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "".join(
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        + "\n"
        for line in lines
    )


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration(seconds: float) -> str:
    """A short span, as kubectl shows ages: 45s, 12m, 3h5m, 4d."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes}m" if minutes and hours < 10 else f"{hours}h"
    return f"{hours // 24}d"


def age(text: str | None, now: dt.datetime) -> str:
    when = parse_time(text)
    return duration((now - when).total_seconds()) if when else "-"


def _meta(obj: Obj) -> Obj:
    meta: Obj = obj.get("metadata") or {}
    return meta


def _status(obj: Obj) -> Obj:
    status: Obj = obj.get("status") or {}
    return status


def _phase(obj: Obj) -> str:
    return str(_status(obj).get("phase") or "Pending")


def _or_dash(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def weight(status: Obj) -> str:
    """The canary's share: achieved, and asked when they differ ("25% of 50%")."""
    asked = status.get("canaryWeight") or 0
    achieved = status.get("canaryWeightAchieved")
    if achieved is None or achieved == asked:
        return f"{asked}%"
    return f"{achieved}% of {asked}%"


def _row(kind: Kind, obj: Obj, now: dt.datetime) -> list[str]:
    status = _status(obj)
    if kind is TRAININGJOB:
        checkpoint = status.get("lastCheckpoint") or {}
        step = checkpoint.get("step")
        return [
            _phase(obj),
            _or_dash(status.get("attempt")),
            str(status.get("preemptions") or 0),
            str(status.get("restarts") or 0),
            f"step {step}" if step is not None else ("yes" if checkpoint else "-"),
            age(_meta(obj).get("creationTimestamp"), now),
        ]
    return [
        _phase(obj),
        _or_dash(status.get("stableRevision")),
        _or_dash(status.get("canaryRevision")),
        weight(status) if status.get("canaryRevision") else "-",
        str(status.get("readyReplicas") or 0),
        age(_meta(obj).get("creationTimestamp"), now),
    ]


HEADERS = {
    TRAININGJOB: ["PHASE", "ATTEMPT", "PREEMPTIONS", "RESTARTS", "CHECKPOINT", "AGE"],
    INFERENCESERVICE: ["PHASE", "STABLE", "CANARY", "WEIGHT", "READY", "AGE"],
}


def get_table(
    kind: Kind, objs: Sequence[Obj], now: dt.datetime, namespaces: bool, prefixed: bool
) -> str:
    """`stratus get`: one row per resource; the namespace column with -A, and names prefixed
    with their kind when both kinds are listed (as `kubectl get all` does). A NEXT column,
    when any of them has a schedule, says what it changes next."""
    scheduled = any((obj.get("spec") or {}).get("schedule") or _idle(obj) for obj in objs)
    headers = (["NAMESPACE"] if namespaces else []) + ["NAME", *HEADERS[kind]]
    headers += ["NEXT"] if scheduled else []
    rows = []
    for obj in objs:
        name = _meta(obj).get("name", "")
        row = [f"{kind.singular}/{name}" if prefixed else name, *_row(kind, obj, now)]
        row += [next_change(kind, obj, now) or "-"] if scheduled else []
        rows.append(([_meta(obj).get("namespace", "")] if namespaces else []) + row)
    return table(headers, rows)


def _idle(obj: Obj) -> bool:
    return bool((obj.get("spec") or {}).get("idle"))


def next_change(kind: Kind, obj: Obj, now: dt.datetime) -> str | None:
    """What a schedule changes next, in a few words: an InferenceService's replicas at its
    status.schedule.nextChange ("0 replicas in 3h"), or when a TrainingJob waiting for its
    start window may start ("starts in 5h"); None when nothing is scheduled."""
    if kind is INFERENCESERVICE:
        record = _status(obj).get("schedule") or {}
        at = parse_time(record.get("nextChange"))
        if at is None or record.get("nextReplicas") is None:
            return None
        return f"{record['nextReplicas']} replicas in {duration((at - now).total_seconds())}"
    raw = ((obj.get("spec") or {}).get("schedule") or {}).get("startWindow")
    if not raw or _phase(obj) != "Waiting":
        return None
    try:
        window = StartWindow.model_validate(raw)
    except ValueError:
        return None
    state = windows.state(windows.occurrences([window], window.time_zone, now), now)
    if state.inside or state.next_change is None:
        return None
    return f"starts in {duration((state.next_change - now).total_seconds())}"


def schedule_lines(kind: Kind, obj: Obj, now: dt.datetime) -> list[str]:
    """describe: the schedule as asked, where it stands, and what it changes next."""
    spec: Obj = obj.get("spec") or {}
    raw = spec.get("schedule") or {}
    lines: list[str] = []
    if kind is TRAININGJOB:
        window = raw.get("startWindow")
        if window:
            zone = window.get("timeZone", "UTC")
            days = ",".join(window.get("days") or [])
            lines.append(f"Start window: {days} {window.get('start')}-{window.get('end')} {zone}")
    else:
        for window in raw.get("offHours") or []:
            days = ",".join(window.get("days") or [])
            lines.append(
                f"Off-hours:   {days} {window.get('start')}-{window.get('end')} "
                f"{raw.get('timeZone', 'UTC')} (at {raw.get('replicas', 0)} replicas, back "
                f"{raw.get('warmUp', '10m')} early)"
            )
        idle = spec.get("idle") or {}
        if idle:
            signals = [
                f"GPU below {idle['gpuUtilizationBelow']}%"
                if "gpuUtilizationBelow" in idle
                else "",
                "no requests" if idle.get("requestsQuery") else "",
            ]
            lines.append(
                f"Idle:        to zero after {idle.get('after')} of "
                + " and ".join(s for s in signals if s)
            )
        record = _status(obj).get("schedule") or {}
        if record:
            lines.append(
                f"Schedule:    {record.get('reason') or '-'}: {record.get('message') or ''}"
            )
            lines.append(f"GPU-hours reclaimed: {float(record.get('gpuHoursReclaimed') or 0):g}")
    nxt = next_change(kind, obj, now)
    if nxt:
        lines.append(f"Next change: {nxt}")
    return lines


def as_list(objs: Sequence[Obj]) -> Obj:
    """Several objects as kubectl prints them with -o json|yaml."""
    return {"apiVersion": "v1", "kind": "List", "items": list(objs)}


def conditions(obj: Obj, now: dt.datetime) -> str:
    rows = [
        [
            c.get("type", ""),
            c.get("status", ""),
            c.get("reason") or "-",
            age(c.get("lastTransitionTime"), now),
            c.get("message") or "",
        ]
        for c in _status(obj).get("conditions") or []
    ]
    return table(["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], rows) if rows else "<none>\n"


def event_time(event: Obj) -> str | None:
    return event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")


def events(items: Sequence[Obj], now: dt.datetime, last: int = 15) -> str:
    ordered = sorted(items, key=lambda e: event_time(e) or "")[-last:]
    rows = [
        [
            e.get("type") or "",
            e.get("reason") or "",
            age(event_time(e), now),
            (e.get("message") or "").replace("\n", " "),
        ]
        for e in ordered
    ]
    return table(["TYPE", "REASON", "AGE", "MESSAGE"], rows) if rows else "<none>\n"


# TrainingJob: the attempt timeline.


@dataclass
class Attempt:
    """One attempt, as its Events, its Job and the TrainingJob's status tell it."""

    number: int
    state: str = "Unknown"
    started: str | None = None
    ended: str | None = None
    capacity: str | None = None
    resumed_from: str | None = None
    job: str | None = None
    detail: str = ""

    def as_json(self) -> Obj:
        """camelCase, as the API's own fields are."""
        return {
            re.sub(r"_(.)", lambda m: m.group(1).upper(), k): v
            for k, v in asdict(self).items()
            if v not in (None, "")
        }


ATTEMPT_OF = re.compile(r"^attempt (\d+) ")
STARTED_ON = re.compile(r"^attempt \d+ started on (.+) capacity")
RESUMES_FROM = re.compile(r"^attempt \d+ resumes from (.+)$")
# Events that end an attempt, and the state they leave it in.
ENDINGS = {
    "Preempted": "Preempted",
    "Restarted": "Failed",
    "Suspended": "Suspended",
    "Succeeded": "Succeeded",
    "Failed": "Failed",
}


def attempt_timeline(obj: Obj, events: Sequence[Obj], jobs: Sequence[Obj]) -> list[Attempt]:
    """Every attempt from the first to the current one. The operator's Events say how each
    began and ended (their messages start `attempt N`); a Job still there gives its times; the
    status says where the current one stands. Events expire (an hour by default), so an old
    attempt may be known by its number only."""
    status = _status(obj)
    current = int(status.get("attempt") or 0)
    attempts = {n: Attempt(n) for n in range(1, current + 1)}
    for event in sorted(events, key=lambda e: event_time(e) or ""):
        message = event.get("message") or ""
        found = ATTEMPT_OF.match(message)
        reason = event.get("reason") or ""
        if found is None:
            # A deadline or limit that ends the run names no attempt: it ended the current one.
            if reason not in ("Failed", "Succeeded") or not current:
                continue
            number = current
        else:
            number = int(found.group(1))
        attempt = attempts.setdefault(number, Attempt(number))
        if reason == "AttemptStarted":
            attempt.started = attempt.started or event_time(event)
            on = STARTED_ON.match(message)
            attempt.capacity = on.group(1) if on else attempt.capacity
            if attempt.state == "Unknown":
                attempt.state = "Started"
        elif reason == "Resumed":
            resumed = RESUMES_FROM.match(message)
            attempt.resumed_from = resumed.group(1) if resumed else attempt.resumed_from
        elif reason in ENDINGS:
            attempt.state = ENDINGS[reason]
            attempt.ended = event_time(event)
            attempt.detail = message
    for job in jobs:
        labels = _meta(job).get("labels") or {}
        try:
            number = int(labels.get(ATTEMPT_LABEL, ""))
        except ValueError:
            continue
        attempt = attempts.setdefault(number, Attempt(number))
        attempt.job = _meta(job).get("name")
        job_status = job.get("status") or {}
        attempt.started = attempt.started or job_status.get("startTime")
        attempt.ended = attempt.ended or job_status.get("completionTime")
    _current(attempts.get(current), status)
    for attempt in attempts.values():
        if attempt.state == "Unknown" and attempt.number < current:
            attempt.detail = attempt.detail or "no record left (its Events have expired)"
    return [attempts[n] for n in sorted(attempts)]


def _current(attempt: Attempt | None, status: Obj) -> None:
    """The current attempt's state, from the phase, when no Event has ended it."""
    if attempt is None or attempt.state in ENDINGS.values():
        return
    phase = status.get("phase")
    if phase == "Restarting" and status.get("nextAttemptAt") and not status.get("activeJob"):
        attempt.state = "Waiting"
        attempt.detail = f"starts at {status['nextAttemptAt']} (backoff)"
    elif phase in ("Running", "Pending", "Restarting", "Suspended", "Succeeded", "Failed"):
        attempt.state = "Pending" if phase == "Restarting" else phase
        if phase in ("Pending", "Restarting") and status.get("message"):
            attempt.detail = attempt.detail or str(status["message"])
    attempt.job = attempt.job or status.get("activeJob")


def render_timeline(attempts: Sequence[Attempt], now: dt.datetime) -> str:
    if not attempts:
        return "<none>\n"
    rows = []
    for a in attempts:
        start, end = parse_time(a.started), parse_time(a.ended)
        if start and end:
            ran = duration((end - start).total_seconds())
        elif start and a.state in ("Running", "Started", "Pending"):
            ran = duration((now - start).total_seconds()) + "+"
        else:
            ran = "-"
        detail = a.detail
        if a.resumed_from:
            detail = f"resumed from {a.resumed_from}" + (f"; {detail}" if detail else "")
        rows.append(
            [
                f"#{a.number}",
                a.state,
                a.started or "-",
                ran,
                a.capacity or "-",
                a.job or "-",
                detail,
            ]
        )
    return table(["ATTEMPT", "STATE", "STARTED", "RAN", "CAPACITY", "JOB", "DETAIL"], rows)


def _header(obj: Obj, kind: Kind, now: dt.datetime) -> list[str]:
    meta = _meta(obj)
    lines = [
        f"Name:        {meta.get('name', '')}",
        f"Namespace:   {meta.get('namespace', '')}",
        f"Kind:        {kind.kind}",
        f"Age:         {age(meta.get('creationTimestamp'), now)}"
        f" (created {meta.get('creationTimestamp', '-')})",
        f"Generation:  {meta.get('generation', '-')} (observed "
        f"{_or_dash(_status(obj).get('observedGeneration'))})",
        f"Phase:       {_phase(obj)}",
    ]
    message = _status(obj).get("message")
    if message:
        lines.append(f"Message:     {message}")
    return lines


def describe_trainingjob(
    obj: Obj, attempts: Sequence[Attempt], event_items: Sequence[Obj], now: dt.datetime
) -> str:
    spec: Obj = obj.get("spec") or {}
    status = _status(obj)
    resources = spec.get("resources") or {}
    spot = spec.get("spot") or {}
    checkpoint = spec.get("checkpoint") or {}
    last = status.get("lastCheckpoint") or {}
    lines = _header(obj, TRAININGJOB, now)
    lines += [
        f"Image:       {spec.get('image', '-')}",
        f"Workers:     {spec.get('workers', 1)} x {resources.get('gpu', 1)} GPU"
        + (f" ({resources['gpuType']})" if resources.get("gpuType") else ""),
        "Spot:        "
        + (
            f"yes, up to {spot.get('maxPreemptions', 20)} preemptions"
            if spot.get("enabled")
            else "no"
        ),
        "Checkpoints: "
        + (checkpoint.get("uri") or checkpoint.get("persistentVolumeClaim") or "none"),
        f"Suspend:     {'yes' if spec.get('suspend') else 'no'}",
        f"Attempt:     {_or_dash(status.get('attempt'))}"
        f"  preemptions {status.get('preemptions') or 0}"
        f"  restarts {status.get('restarts') or 0}"
        f"  retryable restarts {status.get('retryableRestarts') or 0}",
        "Last checkpoint: "
        + (
            f"{last.get('path')}"
            + (f" (step {last['step']})" if last.get("step") is not None else "")
            if last
            else "none"
        ),
        f"GPU time:    {duration(status.get('gpuSeconds') or 0)}",
    ]
    if status.get("nextAttemptAt"):
        lines.append(f"Next attempt at: {status['nextAttemptAt']}")
    lines += schedule_lines(TRAININGJOB, obj, now)
    text = "\n".join(lines) + "\n"
    text += "Attempts:\n" + _indent(render_timeline(attempts, now))
    text += "Conditions:\n" + _indent(conditions(obj, now))
    text += "Events:\n" + _indent(events(event_items, now))
    return text


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


# InferenceService: the rollout.


def _hold(step: Obj) -> str:
    pause = step.get("pause")
    if pause is not None and not pause.get("duration"):
        return "until promoted"
    return f"hold {(pause or {}).get('duration') or 'one analysis interval'}"


def rollout_lines(obj: Obj) -> list[str]:
    """Where a rollout stands: the revisions, each step with the current one marked, the
    canary's weight asked and achieved, the latest analysis and validation."""
    status = _status(obj)
    canary = status.get("canaryRevision")
    lines = [
        f"stable:  {_or_dash(status.get('stableRevision'))}"
        f" ({status.get('readyReplicas') or 0} ready replicas, all revisions)"
    ]
    if canary:
        lines.append(f"canary:  {canary} at {weight(status)}")
    if status.get("abortedRevision"):
        lines.append(f"rolled back: {status['abortedRevision']} (stratus retry to try again)")
    if status.get("retiringRevision"):
        lines.append(
            f"retiring: {status['retiringRevision']} at {_or_dash(status.get('retireAt'))}"
        )
    lines += _steps(obj) + _analysis(status) + _validation(status)
    healthy = next((c for c in status.get("conditions") or [] if c.get("type") == "Healthy"), None)
    if healthy:
        lines.append(
            f"Healthy={healthy.get('status')} {healthy.get('reason', '')}"
            + (f": {healthy['message']}" if healthy.get("message") else "")
        )
    if status.get("message"):
        lines.append(str(status["message"]))
    return lines


def _steps(obj: Obj) -> list[str]:
    rollout = (obj.get("spec") or {}).get("rollout") or {}
    if (rollout.get("strategy") or "Canary") != "Canary":
        return [f"strategy: {rollout['strategy']}"]
    status = _status(obj)
    current = status.get("currentStep") if status.get("canaryRevision") else None
    lines = ["steps:"]
    for index, step in enumerate(rollout.get("steps") or [{"weight": 100}]):
        mark = "    "
        if current is not None and index < current:
            mark = "done"
        elif index == current:
            mark = "->  "
        lines.append(f"  {mark} step {index + 1}: {step.get('weight')}%, {_hold(step)}")
    return lines


def _analysis(status: Obj) -> list[str]:
    analysis = status.get("lastAnalysis") or {}
    if not analysis.get("results"):
        return []
    lines = [
        f"analysis at {_or_dash(analysis.get('time'))}: "
        f"{analysis.get('failures', 0)} failed, {analysis.get('inconclusive', 0)} inconclusive"
    ]
    for result in analysis["results"]:
        value = result.get("value")
        lines.append(
            f"  {result.get('name')}: {'no data' if value is None else value}"
            f" ({result.get('verdict')})"
        )
    return lines


def _validation(status: Obj) -> list[str]:
    validation = status.get("validation") or {}
    if not validation.get("phase"):
        return []
    lines = [
        f"validation of {_or_dash(validation.get('revision'))}: {validation['phase']}"
        + (f" ({validation['reason']})" if validation.get("reason") else "")
    ]
    for result in validation.get("results") or []:
        agreement = result.get("agreement")
        share = "-" if agreement is None else f"{agreement * 100:.1f}%"
        lines.append(
            f"  {result.get('name')} ({result.get('source')}): {share} agreement over "
            f"{result.get('samples', 0)} samples ({result.get('verdict')})"
        )
    return lines


def render_rollout(obj: Obj) -> str:
    """`stratus status` and `stratus rollout status`: a title line, then the rollout."""
    meta = _meta(obj)
    title = f"{meta.get('namespace', '')}/{meta.get('name', '')}: {_phase(obj)}\n"
    return title + _indent("\n".join(rollout_lines(obj)))


def revisions(obj: Obj, deployments: Sequence[Obj]) -> str:
    """The revisions' Deployments, with what each is to the rollout."""
    status = _status(obj)
    roles = {
        status.get("stableRevision"): "stable",
        status.get("canaryRevision"): "canary",
        status.get("retiringRevision"): "retiring",
        status.get("abortedRevision"): "rolled back",
    }
    rows = []
    for deployment in deployments:
        revision = (_meta(deployment).get("labels") or {}).get(REVISION_LABEL, "")
        state = deployment.get("status") or {}
        wanted = (deployment.get("spec") or {}).get("replicas", 0)
        rows.append(
            [
                revision,
                roles.get(revision, "-"),
                f"{state.get('readyReplicas') or 0}/{wanted}",
                _meta(deployment).get("name", ""),
            ]
        )
    return table(["REVISION", "ROLE", "READY", "DEPLOYMENT"], rows) if rows else "<none>\n"


def describe_inferenceservice(
    obj: Obj, deployments: Sequence[Obj], event_items: Sequence[Obj], now: dt.datetime
) -> str:
    spec: Obj = obj.get("spec") or {}
    status = _status(obj)
    replicas = spec.get("replicas") or {}
    lines = _header(obj, INFERENCESERVICE, now)
    lines += [
        f"Image:       {spec.get('image', '-')}",
        f"Model:       {(spec.get('model') or {}).get('uri', '-')}",
        f"Replicas:    {replicas.get('min', 1)}-{replicas.get('max', 1)}",
        f"URL:         {_or_dash(status.get('url'))}",
        *schedule_lines(INFERENCESERVICE, obj, now),
    ]
    text = "\n".join(lines) + "\n"
    text += "Rollout:\n" + _indent("\n".join(rollout_lines(obj)))
    text += "Revisions:\n" + _indent(revisions(obj, deployments))
    text += "Conditions:\n" + _indent(conditions(obj, now))
    text += "Events:\n" + _indent(events(event_items, now))
    return text


def unseen(obj: Obj) -> str | None:
    """What the operator has yet to act on: a new spec generation, or a command (promote,
    abort, retry) whose annotation value it has not handled. Until it has, the status is old."""
    status = _status(obj)
    generation = _meta(obj).get("generation")
    if generation is not None and status.get("observedGeneration") != generation:
        return f"generation {generation}"
    annotations = _meta(obj).get("annotations") or {}
    handled = status.get("handledCommands") or {}
    for command in COMMANDS:
        if annotations.get(command) and annotations[command] != handled.get(command):
            return command
    return None


def rollout_outcome(obj: Obj) -> int | None:
    """How a rollout stands, once the operator has acted on the latest spec and command:
    HEALTHY (promoted, or no canary), DEGRADED (rolled back), PAUSED (waits for a person);
    None while in progress."""
    if unseen(obj):
        return None
    status = _status(obj)
    phase = status.get("phase")
    if phase == "Healthy" and not status.get("canaryRevision"):
        return HEALTHY
    if phase == "Degraded":
        return DEGRADED
    if phase == "Paused":
        return PAUSED
    return None


def progress(obj: Obj) -> str:
    """One line saying where a rollout is, printed while `rollout status --watch` waits."""
    waiting = unseen(obj)
    if waiting:
        return f"waiting for the operator to act on {waiting}"
    status = _status(obj)
    phase = _phase(obj)
    canary = status.get("canaryRevision")
    if canary:
        steps = ((obj.get("spec") or {}).get("rollout") or {}).get("steps") or [{"weight": 100}]
        step = status.get("currentStep")
        where = "validating" if step is None else f"step {step + 1} of {len(steps)}"
        line = f"{phase}: canary {canary} {where}, at {weight(status)}"
    else:
        line = f"{phase}: stable {_or_dash(status.get('stableRevision'))}, "
        line += f"{status.get('readyReplicas') or 0} ready"
    if status.get("message"):
        line += f" ({status['message']})"
    return line


OUTCOMES = {
    HEALTHY: "rollout healthy",
    DEGRADED: "rollout rolled back",
    PAUSED: "rollout paused: waiting for a person (stratus promote, or stratus abort)",
    NOT_SETTLED: "rollout not settled",
}


def seconds(text: str) -> float:
    """A duration flag: plain seconds, or with units as Go writes them (90s, 10m, 1h30m)."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        parts = re.findall(r"([0-9.]+)(ms|s|m|h)", text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"not a duration: {text!r} (e.g. 90, 90s, 10m, 1h30m)") from None
        units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        value = sum(float(n) * units[u] for n, u in parts)
    if value < 0:
        raise ValueError(f"not a duration: {text!r}")
    return value


def target(text: str, kind: Kind | None = None) -> tuple[Kind | None, str]:
    """A NAME argument, which may carry its kind as kubectl takes it: tj/NAME, infs/NAME."""
    prefix, slash, name = text.partition("/")
    if not slash:
        return kind, text
    named = kind_named(prefix)
    if kind is not None and named is not kind:
        raise ValueError(f"{text}: not a {kind.singular}")
    return named, name
