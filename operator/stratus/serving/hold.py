"""Off-hours and idle reclamation for an InferenceService, pure: whether every revision is held
at a floor in this pass (`Pass.held`), status.schedule, and the Events of each change.

- Off-hours (spec.schedule): held at schedule.replicas from a window's start until warmUp before
  its end, then scaled back up, so the service is ready when on-hours begin.
- Idle (spec.idle): once every signal has said idle for `after`, held at zero until woken: the
  annotation stratus.dev/wake set to a new value (`stratus resume infs/NAME`) or a new spec
  generation. The readings are taken by the controller; no reading is never idle. Idle is not
  judged inside off-hours (the warm-up has no traffic by design), nor after a hold ends until
  the stable revision has a ready replica again (`waking`).
- While held, a canary rollout is paused where it stands (its revision at zero, its commands
  kept for later); when the hold ends, its current step starts over (pause, analysis and
  progress deadline counted afresh), since its pods start again from nothing.
- GPU-hours reclaimed: the stable's replicas taken away (its size when the hold began, less
  the floor) times the GPUs of each, for as long as the hold lasts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from stratus.api.common import duration_seconds
from stratus.conditions import parse_time, precise_timestamp, timestamp
from stratus.schedules import idle as idle_signals
from stratus.schedules import offhours, windows
from stratus.serving import children
from stratus.serving.context import Pass
from stratus.serving.labels import WAKE_ANNOTATION

ON_HOURS = "OnHours"
OFF_HOURS = "OffHours"
WARM_UP = "WarmUp"
IDLE = "Idle"
IDLE_SCALED_TO_ZERO = "IdleScaledToZero"
WOKEN = "WokenUp"
# Seconds between two readings of the idle signals.
IDLE_CHECK = 15.0
# While held, gpuHoursReclaimed is brought up to date this often (seconds), not on every pass:
# each update is a status write.
RECLAIM_REFRESH = 60.0


def decide(p: Pass) -> None:
    """Sets p.held and status.schedule; Events on each hold and release."""
    spec, obs = p.spec, p.obs
    before: dict[str, Any] = obs.status.get("schedule") or {}
    if spec.schedule is None and spec.idle is None:
        p.status.pop("schedule", None)
        if before.get("held"):
            p.event(ON_HOURS, "no schedule or idle reclamation any more: scaled back up")
            _restart_canary(p)
        return
    now = obs.now
    woken = _woken(p)
    hours = offhours.off_hours(spec.schedule, now) if spec.schedule else None
    was_idle = bool(before.get("held")) and before.get("reason") == IDLE_SCALED_TO_ZERO
    spec_changed = obs.status.get("observedGeneration") not in (None, obs.generation)
    idle_held = was_idle and spec.idle is not None and not woken and not spec_changed
    released = bool(before.get("held")) and not idle_held and not (hours and hours.held)
    # Scaling back up after a hold: no traffic until the model has loaded again.
    waking = (released or bool(before.get("waking"))) and not _stable_ready(p)
    idle_since = None if waking else _idle(p, before, hours, idle_held)
    if not was_idle and idle_since and spec.idle:
        after = duration_seconds(spec.idle.after) or 0.0
        since = parse_time(idle_since) or now
        idle_held = (now - since).total_seconds() >= after
    held: int | None = None
    if idle_held:
        held = 0
    elif hours and hours.held and spec.schedule:
        held = spec.schedule.replicas
    p.held = held
    record: dict[str, Any] = {
        "offHours": bool(hours and hours.off_hours),
        "held": held is not None,
        "gpuHoursReclaimed": float(before.get("gpuHoursReclaimed") or 0.0),
    }
    if idle_since and not idle_held:
        record["idleSince"] = idle_since
    # Written false too: the schema defaults it, and a status that leaves out a defaulted field
    # differs from the stored one on every pass.
    record["waking"] = waking
    _state(p, record, hours, idle_held, idle_since)
    _transitions(p, before, record, woken, spec_changed)
    _reclaimed(p, before, record)
    p.status["schedule"] = record


def _woken(p: Pass) -> bool:
    """A new value of the wake annotation, taken once (recorded as handled)."""
    value = p.obs.annotations.get(WAKE_ANNOTATION)
    handled = p.status.setdefault("handledCommands", {})
    if not value or handled.get(WAKE_ANNOTATION) == value:
        return False
    handled[WAKE_ANNOTATION] = value
    return True


def _idle(
    p: Pass, before: dict[str, Any], hours: offhours.OffHours | None, idle_held: bool
) -> str | None:
    """Since when the service has been idle (RFC 3339), from this pass's readings or, without
    any, as recorded; None while busy, unknown, held, inside off-hours (the warm-up brings no
    traffic by design), or without spec.idle."""
    spec = p.spec
    if spec.idle is None or idle_held or (hours and hours.off_hours):
        return None
    p.plan.later(IDLE_CHECK)
    since: str | None = before.get("idleSince")
    if p.obs.idle is None:
        return since
    verdict = idle_signals.judge(spec.idle, p.obs.idle)
    if not verdict.idle:
        return None
    return since or precise_timestamp(p.obs.now)


def _stable_ready(p: Pass) -> bool:
    stable = p.deployments.get(str(p.status.get("stableRevision") or ""))
    return stable is not None and stable.ready > 0


def _state(
    p: Pass,
    record: dict[str, Any],
    hours: offhours.OffHours | None,
    idle_held: bool,
    idle_since: str | None,
) -> None:
    """reason, message, replicas and the next change."""
    spec, name = p.spec, p.obs.owner.name
    zone = spec.schedule.time_zone if spec.schedule else "UTC"
    wake = f"`stratus resume infs/{name}` (or a change to the spec) wakes it"
    if hours and hours.next_change:
        record["nextChange"] = timestamp(hours.next_change)
        record["nextReplicas"] = (
            spec.replicas.min if hours.held or not spec.schedule else spec.schedule.replicas
        )
    if idle_held:
        record.update(reason=IDLE_SCALED_TO_ZERO, replicas=0)
        record["message"] = f"idle: scaled to zero until woken; {wake}"
        # Off-hours do not wake an idle service.
        record.pop("nextChange", None)
        record.pop("nextReplicas", None)
        return
    if hours and hours.held and spec.schedule:
        record.update(reason=OFF_HOURS, replicas=spec.schedule.replicas)
        until = f" until {windows.local(hours.next_change, zone)}" if hours.next_change else ""
        record["message"] = (
            f"off-hours: held at {spec.schedule.replicas} replicas{until} "
            f"(warm-up {spec.schedule.warm_up} before they end)"
        )
        return
    if hours and hours.off_hours and hours.ends and spec.schedule:
        record["reason"] = WARM_UP
        record["message"] = (
            f"off-hours end at {windows.local(hours.ends, zone)}: scaled back up "
            f"{spec.schedule.warm_up} before, to be ready"
        )
    else:
        record["reason"] = ON_HOURS
        nxt = (
            f"; off-hours begin at {windows.local(hours.next_change, zone)}"
            if hours and hours.next_change
            else ""
        )
        record["message"] = f"on-hours{nxt}"
    if idle_since and spec.idle:
        after = duration_seconds(spec.idle.after) or 0.0
        since = parse_time(idle_since) or p.obs.now
        at = since + dt.timedelta(seconds=after)
        record["reason"] = IDLE
        record["message"] += f"; idle since {idle_since}: scaled to zero at {timestamp(at)} "
        record["message"] += "unless it gets requests or GPU work"
        current = parse_time(record.get("nextChange"))
        if current is None or at < current:
            record["nextChange"], record["nextReplicas"] = timestamp(at), 0


def _transitions(
    p: Pass, before: dict[str, Any], record: dict[str, Any], woken: bool, spec_changed: bool
) -> None:
    """Events and bookkeeping when a hold begins or ends, and the wake-up at the next change."""
    now = p.obs.now
    nxt = parse_time(record.get("nextChange"))
    if nxt is not None:
        p.plan.later((nxt - now).total_seconds())
    if record["held"] and before.get("held") and before.get("reason") == record["reason"]:
        record["heldSince"] = before.get("heldSince") or timestamp(now)
        record["heldFrom"] = before.get("heldFrom")
        return
    if record["held"]:
        record["heldSince"] = timestamp(now)
        record["heldFrom"] = before.get("heldFrom") if before.get("held") else _size(p)
        if record["reason"] == IDLE_SCALED_TO_ZERO:
            p.event(
                IDLE_SCALED_TO_ZERO,
                f"idle for {p.spec.idle.after if p.spec.idle else ''}: scaled to zero",
            )
        else:
            p.event(OFF_HOURS, f"scaled to {record['replicas']} replicas: {record['message']}")
        return
    if not before.get("held"):
        return
    if before.get("reason") == IDLE_SCALED_TO_ZERO:
        why = "woken by stratus.dev/wake" if woken else "woken by a new spec"
        if not woken and not spec_changed:
            why = "idle reclamation turned off"
        p.event(WOKEN, f"{why}: scaled back up")
    elif record["reason"] == WARM_UP:
        p.event(WARM_UP, f"scaled back up: {record['message']}")
    else:
        p.event(ON_HOURS, "off-hours over: scaled back up")
    _restart_canary(p)


def _size(p: Pass) -> int:
    """The stable's size as the hold begins: replicas.min, or the autoscaler's count."""
    if "stableRevision" not in p.status:
        return max(1, p.spec.replicas.min)
    return children.base(p)


def _restart_canary(p: Pass) -> None:
    """A canary held at zero starts its step over: its pods are starting from nothing."""
    if p.status.get("canaryRevision"):
        stamp = precise_timestamp(p.obs.now)
        p.status["stepStartedAt"] = stamp
        p.status["canaryUnreadySince"] = stamp


def _reclaimed(p: Pass, before: dict[str, Any], record: dict[str, Any]) -> None:
    """GPU-hours reclaimed, brought up to date on each change of hold, and every
    RECLAIM_REFRESH seconds while one lasts."""
    now = p.obs.now
    last = parse_time(before.get("reclaimedAt"))
    if before.get("held") and last is not None:
        changed = not record["held"] or before.get("reason") != record["reason"]
        elapsed = (now - last).total_seconds()
        if not changed and elapsed < RECLAIM_REFRESH:
            record["reclaimedAt"] = before["reclaimedAt"]
            p.plan.later(RECLAIM_REFRESH - elapsed)
            return
        taken = max(0, int(before.get("heldFrom") or 0) - int(before.get("replicas") or 0))
        gained = taken * p.spec.resources.gpu * max(0.0, elapsed) / 3600
        record["gpuHoursReclaimed"] = round(record["gpuHoursReclaimed"] + gained, 6)
    if record["held"]:
        record["reclaimedAt"] = precise_timestamp(now)
        p.plan.later(RECLAIM_REFRESH)
