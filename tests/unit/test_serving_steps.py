"""The canary step machine without a cluster: Recreate, a person's commands (promote, abort,
retry), a new spec superseding a canary or returning to the stable, and the old stable retired
after a promotion."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from stratus.serving import planner, steps
from stratus.serving.revision import revision_of
from tests.unit.test_serving_planner import (
    ERRORS,
    NOW,
    canary_status,
    condition,
    fixed,
    observe,
    sized,
    spec,
    with_image,
)

ABORT = "stratus.dev/abort"
RETRY = "stratus.dev/retry"
PROMOTE = "stratus.dev/promote"
PROMOTE_FULL = "stratus.dev/promote-full"


def test_durations_are_read_as_the_api_writes_them() -> None:
    assert steps.parse_duration("90s") == 90
    assert steps.parse_duration("1h30m") == 5400
    assert steps.parse_duration("1m0.5s") == 60.5
    assert steps.parse_duration("250ms") == 0.25


# -- Recreate ------------------------------------------------------------------------------------


def test_recreate_replaces_the_stable_at_once_without_a_canary() -> None:
    old = spec(replicas={"min": 4, "max": 4}, strategy="Recreate", steps=[])
    status = planner.plan(observe(old, {}, {})).status
    new = with_image(old, "serve:2")
    stable, revision = revision_of(old), revision_of(new)
    plan = planner.plan(observe(new, status, {stable: 4}))
    assert plan.status["stableRevision"] == revision
    assert "canaryRevision" not in plan.status
    assert plan.status["canaryWeight"] == 0
    assert plan.delete == [f"web-{stable}"]
    assert sized(plan) == {f"web-{revision}": 4}
    assert (plan.events[-1].reason, plan.events[-1].message) == (
        "Recreated",
        f"revision {revision} replaced {stable}",
    )
    # No analysis, no steps, no promotion to count: the new revision simply becomes ready.
    assert (plan.analyze, plan.outcomes) == (False, [])
    healthy = condition(plan.status, "Healthy")
    assert (plan.status["phase"], healthy["reason"]) == ("Progressing", "StableNotReady")
    ready = planner.plan(observe(new, plan.status, {revision: 4}))
    assert ready.status["phase"] == "Healthy"
    assert (sized(ready), ready.delete) == ({}, [])


def test_recreate_during_a_canary_deletes_the_canary_and_the_stable() -> None:
    _, status, stable, canary = canary_status()
    recreate = spec("serve:3", strategy="Recreate", steps=[])
    latest = revision_of(recreate)
    plan = planner.plan(observe(recreate, status, {stable: 8, canary: 2}))
    assert plan.delete == [f"web-{canary}", f"web-{stable}"]
    assert [e.reason for e in plan.events] == ["CanarySuperseded", "Recreated"]
    assert (plan.status["stableRevision"], plan.status.get("canaryRevision")) == (latest, None)
    assert sized(plan) == {f"web-{latest}": 10}


# -- a person's commands -------------------------------------------------------------------------


def test_an_aborted_canary_stays_down_until_a_person_retries_it() -> None:
    new, status, stable, canary = canary_status()
    running = {stable: 8, canary: 2}
    aborted = planner.plan(observe(new, status, running, annotations={ABORT: "1"}))
    assert aborted.outcomes == ["aborted"]
    assert (aborted.status["phase"], aborted.status["abortedRevision"]) == ("Degraded", canary)
    assert "canaryRevision" not in aborted.status
    healthy = condition(aborted.status, "Healthy")
    assert (healthy["reason"], healthy["message"]) == (
        "RolledBack",
        f"canary {canary} rolled back: aborted by a person",
    )
    assert (aborted.events[-1].type, aborted.events[-1].reason) == ("Warning", "RolledBack")
    # The stable back at full size; the canary kept at none, for inspection.
    assert sized(aborted) == {f"web-{stable}": 10, f"web-{canary}": 0}
    assert aborted.delete == []
    # The spec still names the aborted revision: it is not started again by itself.
    down = {stable: 10, canary: 0}
    later = NOW + dt.timedelta(hours=1)
    held = planner.plan(observe(new, aborted.status, down, now=later, annotations={ABORT: "1"}))
    assert (held.status["phase"], held.status.get("canaryRevision")) == ("Degraded", None)
    assert (held.events, held.outcomes, sized(held)) == ([], [], {})
    # `stratus retry` starts it again from the first step, its analysis counted afresh.
    commands = {ABORT: "1", RETRY: "1"}
    retried = planner.plan(observe(new, held.status, down, now=later, annotations=commands))
    assert retried.status["canaryRevision"] == canary
    assert (retried.status["currentStep"], retried.status["canaryWeight"]) == (0, 20)
    assert "abortedRevision" not in retried.status
    assert retried.status["lastAnalysis"] == {"failures": 0, "inconclusive": 0, "results": []}
    assert retried.events[-1].reason == "CanaryStarted"
    assert retried.status["phase"] == "Progressing"
    # Aborted again, the retry already acted on does not restart it: a new value does.
    again = planner.plan(
        observe(new, retried.status, down, now=later, annotations={ABORT: "2", RETRY: "1"})
    )
    assert again.status["abortedRevision"] == canary
    stays = planner.plan(
        observe(new, again.status, down, now=later, annotations={ABORT: "2", RETRY: "1"})
    )
    assert stays.status.get("canaryRevision") is None
    restarted = planner.plan(
        observe(new, again.status, down, now=later, annotations={ABORT: "2", RETRY: "2"})
    )
    assert restarted.status["canaryRevision"] == canary


def test_an_aborted_canarys_deployment_goes_when_a_newer_revision_is_tried() -> None:
    new, status, stable, canary = canary_status()
    aborted = planner.plan(observe(new, status, {stable: 8, canary: 2}, annotations={ABORT: "1"}))
    newer = spec("serve:3")
    latest = revision_of(newer)
    tried = planner.plan(observe(newer, aborted.status, {stable: 10, canary: 0}))
    assert tried.status["canaryRevision"] == latest
    assert tried.delete == [f"web-{canary}"]
    assert "abortedRevision" not in tried.status


def test_a_retry_without_an_aborted_canary_changes_nothing() -> None:
    new, status, stable, canary = canary_status()
    ready = {stable: 8, canary: 2}
    plain = planner.plan(observe(new, status, ready))
    retried = planner.plan(observe(new, status, ready, annotations={RETRY: "1"}))
    assert retried.status["handledCommands"] == {RETRY: "1"}
    del retried.status["handledCommands"]
    del plain.status["handledCommands"]
    assert retried.status == plain.status
    assert (retried.apply, retried.events) == (plain.apply, plain.events)


def test_promote_moves_an_indefinite_pause_on_one_step_per_command() -> None:
    old = fixed(10, [{"weight": 10, "pause": {}}, {"weight": 50, "pause": {}}, {"weight": 100}])
    new = with_image(old, "serve:2")
    stable, canary = revision_of(old), revision_of(new)
    status = planner.plan(observe(old, {}, {})).status
    status = planner.plan(observe(new, status, {stable: 10})).status
    later = NOW + dt.timedelta(hours=1)
    paused = planner.plan(observe(new, status, {stable: 9, canary: 1}, now=later))
    assert (paused.status["phase"], paused.status["currentStep"]) == ("Paused", 0)
    assert paused.status["message"] == "step 1 waits for `stratus promote`"
    assert condition(paused.status, "Healthy")["reason"] == "Paused"
    assert paused.requeue_after is None  # nothing to wake for but a person
    one = planner.plan(
        observe(new, paused.status, {stable: 9, canary: 1}, now=later, annotations={PROMOTE: "a"})
    )
    assert (one.status["currentStep"], one.status["canaryWeight"]) == (1, 50)
    assert one.status["phase"] == "Progressing"
    assert one.events[-1].message == f"canary {canary} at 50% (step 2 of 3)"
    assert sized(one) == {f"web-{canary}": 5}
    # The same value again: the step holds, paused once the split is in place.
    split = {stable: 5, canary: 5}
    held = planner.plan(observe(new, one.status, split, now=later, annotations={PROMOTE: "a"}))
    assert (held.status["currentStep"], held.status["phase"]) == (1, "Paused")
    last = planner.plan(observe(new, held.status, split, now=later, annotations={PROMOTE: "b"}))
    assert (last.status["currentStep"], last.status["canaryWeight"]) == (2, 100)
    # The 100% step has no pause: held one analysis interval once in place, then promoted.
    full = {stable: 0, canary: 10}
    at = later + dt.timedelta(seconds=10)
    stood = planner.plan(observe(new, last.status, full, now=at, sizes={stable: 0}))
    assert (stood.outcomes, stood.requeue_after) == ([], 10)
    at += dt.timedelta(seconds=10)
    done = planner.plan(observe(new, stood.status, full, now=at, sizes={stable: 0}))
    assert done.outcomes == ["promoted"]
    assert done.status["stableRevision"] == canary


def test_promote_full_skips_every_remaining_step_and_pause() -> None:
    new, status, stable, canary = canary_status()
    # Even with no canary pod ready yet.
    plan = planner.plan(observe(new, status, {stable: 10}, annotations={PROMOTE_FULL: "1"}))
    assert plan.outcomes == ["promoted"]
    assert plan.events[-1].message == f"revision {canary} promoted to stable"
    assert plan.status["stableRevision"] == canary
    for gone in ("canaryRevision", "currentStep", "stepStartedAt", "canaryUnreadySince"):
        assert gone not in plan.status
    assert plan.status["canaryWeight"] == 0
    assert sized(plan) == {f"web-{canary}": 10}


def test_abort_wins_over_promote_given_at_once() -> None:
    new, status, stable, canary = canary_status()
    both = {ABORT: "1", PROMOTE_FULL: "1", PROMOTE: "1"}
    plan = planner.plan(observe(new, status, {stable: 8, canary: 2}, annotations=both))
    assert plan.outcomes == ["aborted"]
    assert plan.status["stableRevision"] == stable
    # Every command given is recorded as handled: none is acted on later.
    assert plan.status["handledCommands"] == both


# -- a new spec during a canary ------------------------------------------------------------------


def test_a_new_spec_mid_canary_supersedes_it_from_the_first_step() -> None:
    new, status, stable, canary = canary_status()
    passing = (planner.Measurement(ERRORS, 0.001),)
    later = NOW + dt.timedelta(minutes=2)
    measured = planner.plan(observe(new, status, {stable: 8, canary: 2}, analysis=passing))
    advanced = planner.plan(observe(new, measured.status, {stable: 8, canary: 2}, now=later))
    assert advanced.status["currentStep"] == 1
    newest = spec("serve:3")
    latest = revision_of(newest)
    at = later + dt.timedelta(seconds=5)
    plan = planner.plan(observe(newest, advanced.status, {stable: 0, canary: 10}, now=at))
    assert plan.delete == [f"web-{canary}"]
    assert [(e.reason, e.message) for e in plan.events] == [
        ("CanarySuperseded", f"canary {canary} superseded by {latest}"),
        ("CanaryStarted", f"revision {latest} is a canary at 20% (stable {stable})"),
    ]
    assert plan.status["stableRevision"] == stable
    assert (plan.status["canaryRevision"], plan.status["currentStep"]) == (latest, 0)
    assert plan.status["canaryWeight"] == 20
    assert plan.status["stepStartedAt"] == "2026-01-01T12:02:05.000Z"
    assert plan.status["lastAnalysis"] == {"failures": 0, "inconclusive": 0, "results": []}
    # The stable, scaled down for the canary it replaces, is back at full size (capacity Keep:
    # none of the new canary's pods is ready), and the new canary starts at its first step.
    assert sized(plan) == {f"web-{stable}": 10, f"web-{latest}": 2}
    assert plan.outcomes == []


def test_a_spec_returned_to_the_stable_cancels_the_canary() -> None:
    _, status, stable, canary = canary_status()
    old = spec("serve:1")
    plan = planner.plan(observe(old, status, {stable: 8, canary: 2}))
    assert plan.delete == [f"web-{canary}"]
    assert (plan.events[-1].reason, plan.events[-1].message) == (
        "CanaryCancelled",
        f"canary {canary} cancelled: the spec returned to the stable revision",
    )
    assert "canaryRevision" not in plan.status
    assert "abortedRevision" not in plan.status
    assert sized(plan) == {f"web-{stable}": 10}
    assert plan.outcomes == []
    healthy = planner.plan(observe(old, plan.status, {stable: 10}))
    assert healthy.status["phase"] == "Healthy"


# -- retiring the replaced stable ----------------------------------------------------------------


def promoted(retire_after: dt.timedelta) -> tuple[Any, planner.Plan, str, str]:
    new, status, stable, canary = canary_status()
    plan = planner.plan(
        dataclasses.replace(
            observe(new, status, {stable: 8, canary: 2}, annotations={PROMOTE_FULL: "1"}),
            retire_after=retire_after,
        )
    )
    return new, plan, stable, canary


def test_the_replaced_stable_keeps_serving_until_it_is_retired() -> None:
    new, plan, stable, canary = promoted(dt.timedelta(minutes=2))
    assert plan.status["retiringRevision"] == stable
    assert plan.status["retireAt"] == "2026-01-01T12:02:00.000Z"
    assert plan.requeue_after == 120
    # A minute on: still there at the size it had, woken again when its time is up.
    minute = NOW + dt.timedelta(minutes=1)
    serving = planner.plan(observe(new, plan.status, {stable: 8, canary: 6}, now=minute))
    assert serving.delete == []
    assert sized(serving) == {f"web-{canary}": 10}
    assert serving.requeue_after == 60
    assert serving.status["retiringRevision"] == stable
    # At retireAt: deleted, and forgotten.
    due = NOW + dt.timedelta(minutes=2)
    retired = planner.plan(observe(new, serving.status, {stable: 8, canary: 10}, now=due))
    assert retired.delete == [f"web-{stable}"]
    assert "retiringRevision" not in retired.status
    assert "retireAt" not in retired.status
    assert sized(retired) == {}
    gone = planner.plan(observe(new, retired.status, {canary: 10}, now=due))
    assert (gone.delete, sized(gone)) == ([], {})
    assert gone.status["phase"] == "Healthy"


def test_a_hand_scaled_retiring_stable_is_left_at_its_size() -> None:
    new, plan, stable, canary = promoted(dt.timedelta(minutes=2))
    minute = NOW + dt.timedelta(minutes=1)
    edited = planner.plan(
        observe(new, plan.status, {stable: 3, canary: 10}, now=minute, sizes={stable: 3})
    )
    assert sized(edited) == {}


def test_a_steps_pause_counts_from_when_its_split_stood_not_from_when_it_was_asked() -> None:
    """As the README says: a canary whose pods take 50 s of a 1m pause to be ready is still
    watched at its weight for the whole minute."""
    old = spec("serve:1", analysis={"interval": "30s"})
    new = spec("serve:2", analysis={"interval": "30s"})
    stable, canary = revision_of(old), revision_of(new)
    status = planner.plan(observe(new, planner.plan(observe(old, {}, {})).status, {stable: 10}))
    asked = status.status
    assert asked["stepStartedAt"] == "2026-01-01T12:00:00.000Z"
    starting = NOW + dt.timedelta(seconds=50)
    slow = planner.plan(observe(new, asked, {stable: 10, canary: 0}, now=starting)).status
    assert "stepInPlaceAt" not in slow
    stood = planner.plan(observe(new, slow, {stable: 8, canary: 2}, now=starting)).status
    assert stood["stepInPlaceAt"] == "2026-01-01T12:00:50.000Z"
    later = starting + dt.timedelta(seconds=20)  # 70 s since asked, 20 s in place
    held = planner.plan(observe(new, stood, {stable: 8, canary: 2}, now=later))
    assert held.status["currentStep"] == 0
    assert held.requeue_after == 40
    done = starting + dt.timedelta(minutes=1)
    advanced = planner.plan(observe(new, held.status, {stable: 8, canary: 2}, now=done)).status
    assert (advanced["currentStep"], advanced["canaryWeight"]) == (1, 100)
    assert "stepInPlaceAt" not in advanced
    assert advanced["stepStartedAt"] == "2026-01-01T12:01:50.000Z"
