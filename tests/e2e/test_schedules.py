"""Schedules end to end on the local cluster, the operator's clock moved by the test
(operator_clock) instead of waiting for night: an InferenceService held at its floor through
off-hours with an Event, back warmUp before they end and ready before on-hours begin; a
TrainingJob that waits outside its start window, then starts inside it.

Windows are laid out from the real time the test starts, in a time zone other than UTC. A
clock moved forward is seen on the operator's next pass; the requeue it set is in real time
(hours away), so the test nudges it with an annotation, as any change to the resource would."""

from __future__ import annotations

import datetime as dt
import re
import time
import zoneinfo
from typing import Any

import pytest
from kubernetes import client

from stratus.api.common import GROUP, VERSION
from stratus.api.schedule import DAYS
from stratus.conditions import timestamp
from tests.builders import TrainingJobBuilder
from tests.conftest import Cluster, OperatorClock
from tests.e2e.test_serving import Serving, service
from tests.support import wait_events, wait_for

pytestmark = pytest.mark.usefixtures("operator")
Obj = dict[str, Any]
WARM_UP = dt.timedelta(minutes=10)


def minute_after(moment: dt.datetime) -> dt.datetime:
    return moment.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)


def window(start: dt.datetime, length: dt.timedelta, zone: str) -> Obj:
    """Every day from `start`'s wall-clock time in `zone`, for `length`."""
    tz = zoneinfo.ZoneInfo(zone)
    return {
        "days": list(DAYS),
        "start": start.astimezone(tz).strftime("%H:%M"),
        "end": (start + length).astimezone(tz).strftime("%H:%M"),
    }


class Moves:
    """The operator's clock, set so that it reads `at` (the real time it started from, plus
    how far the test has gone), and the nudge that makes the operator look again."""

    def __init__(self, clock: OperatorClock, cluster: Cluster, namespace: str) -> None:
        self.clock = clock
        self.custom = client.CustomObjectsApi(cluster.api)
        self.ns = namespace
        self.offset = 0.0

    def to(self, at: dt.datetime) -> None:
        self.offset = (at - dt.datetime.now(dt.UTC)).total_seconds()
        self.clock.set(self.offset)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.offset)

    def nudge(self, plural: str, name: str) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.ns,
            plural,
            name,
            {"metadata": {"annotations": {"e2e.stratus.dev/nudge": str(time.time_ns())}}},
        )


@pytest.fixture
def serving(cluster: Cluster, namespace: str) -> Serving:
    return Serving(cluster, namespace)


@pytest.fixture
def moves(operator_clock: OperatorClock, cluster: Cluster, namespace: str) -> Moves:
    return Moves(operator_clock, cluster, namespace)


def test_off_hours_hold_the_floor_and_warm_up_before_they_end(
    serving: Serving, moves: Moves, capsys: pytest.CaptureFixture[str]
) -> None:
    zone = "America/New_York"
    starts = minute_after(dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    ends = starts + dt.timedelta(hours=3)
    obj = service("night")
    obj["spec"]["replicas"] = {"min": 2, "max": 2}
    obj["spec"]["schedule"] = {
        "offHours": [window(starts, ends - starts, zone)],
        "timeZone": zone,
        "warmUp": "10m",
    }
    serving.create(obj)
    status = serving.wait(
        "night", "Healthy, on-hours", lambda s: s.get("phase") == "Healthy" and s.get("schedule")
    )
    stable = status["stableRevision"]
    assert status["schedule"]["reason"] == "OnHours"
    assert status["schedule"]["nextChange"] == timestamp(starts)
    assert status["schedule"]["nextReplicas"] == 0
    # stratus shows what is scheduled to change next.
    serving.command("get", "infs", "night")
    assert re.search(r"NEXT\n.* 0 replicas in (1h5[0-9]m|2h)\n", capsys.readouterr().out)

    moves.to(starts + dt.timedelta(minutes=1))
    moves.nudge("inferenceservices", "night")
    held = serving.wait("night", "scaled down", lambda s: s.get("phase") == "ScaledDown")
    assert serving.replicas("night") == {stable: 0}
    assert held["schedule"]["held"] is True
    assert held["schedule"]["offHours"] is True
    assert held["schedule"]["nextChange"] == timestamp(ends - WARM_UP)
    assert held["schedule"]["nextReplicas"] == 2
    wait_events(serving.cluster.api, serving.ns, "night", "OffHours")
    serving.command("describe", "infs", "night")
    assert "Next change: 2 replicas in" in capsys.readouterr().out

    moves.to(ends - WARM_UP + dt.timedelta(seconds=30))
    moves.nudge("inferenceservices", "night")
    back = serving.wait(
        "night", "back up", lambda s: s.get("phase") == "Healthy" and s.get("readyReplicas") == 2
    )
    # Ready before on-hours begin, on the operator's clock.
    assert moves.now() < ends
    assert serving.replicas("night") == {stable: 2}
    assert back["schedule"]["reason"] == "WarmUp"
    assert back["schedule"]["offHours"] is True
    assert back["schedule"]["held"] is False
    assert back["schedule"]["gpuHoursReclaimed"] > 0
    wait_events(serving.cluster.api, serving.ns, "night", "WarmUp")


def test_a_training_job_waits_for_its_start_window_then_starts(
    cluster: Cluster, namespace: str, moves: Moves
) -> None:
    zone = "Asia/Kolkata"  # a half-hour offset
    opens = minute_after(dt.datetime.now(dt.UTC) + dt.timedelta(hours=3))
    obj = TrainingJobBuilder("nightly").runs_for("10m").build()
    obj["spec"]["schedule"] = {
        "startWindow": {**window(opens, dt.timedelta(hours=1), zone), "timeZone": zone}
    }
    custom = client.CustomObjectsApi(cluster.api)
    batch = client.BatchV1Api(cluster.api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", obj)

    def status() -> Obj:
        found: Obj = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "trainingjobs", "nightly"
        )
        return found.get("status") or {}

    waiting = wait_for(
        "nightly waiting", lambda: s if (s := status()).get("phase") == "Waiting" else None
    )
    ready = next(c for c in waiting["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "OutsideStartWindow"
    assert "opens at" in ready["message"]
    wait_events(cluster.api, namespace, "nightly", "OutsideStartWindow")
    time.sleep(2)  # a Job created by mistake would be there by now
    assert batch.list_namespaced_job(namespace).items == []

    moves.to(opens + dt.timedelta(seconds=30))
    moves.nudge("trainingjobs", "nightly")
    wait_for(
        "nightly's first attempt",
        lambda: (
            batch.list_namespaced_job(
                namespace, label_selector="stratus.dev/trainingjob=nightly"
            ).items
        ),
    )
    started = wait_for(
        "nightly running", lambda: s if (s := status()).get("phase") == "Running" else None
    )
    assert started["attempt"] == 1
    wait_events(cluster.api, namespace, "nightly", "AttemptStarted")
