"""What both reconcilers share: the status writer (only a change, only over the version planned
from, and what it wrote remembered until the cache shows it), timing, and counting."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY

from stratus import kube as kube_module
from stratus import reconciling
from stratus.kube import Kube, NamespaceTerminating
from tests.unit.fakes import FakeKube, resource

KEY = ("ns", "tj")


def stored(kube: FakeKube) -> dict[str, Any]:
    return kube.put(resource("TrainingJob", "tj", {}))


def write(
    writer: reconciling.StatusWriter, meta: dict[str, Any], old: dict[str, Any], new: dict[str, Any]
) -> float | None:
    return asyncio.run(writer.write(KEY, meta, old, new))


def test_an_unchanged_status_is_not_written() -> None:
    kube = FakeKube()
    writer = reconciling.StatusWriter(cast(Kube, kube), "TrainingJob")
    meta = stored(kube)["metadata"]
    assert write(writer, meta, {"phase": "Running"}, {"phase": "Running"}) is None
    assert kube.calls == []
    assert writer.hold(KEY, 60.0) is None


def test_a_write_is_remembered_until_the_cache_shows_a_later_version() -> None:
    kube = FakeKube()
    writer = reconciling.StatusWriter(cast(Kube, kube), "TrainingJob")
    before = stored(kube)["metadata"]
    assert write(writer, before, {}, {"phase": "Pending"}) is None
    after = kube.objects[("TrainingJob", "ns", "tj")]
    assert after["status"] == {"phase": "Pending"}
    assert writer.stale(KEY, before)
    assert not writer.stale(KEY, after["metadata"])
    # Once the cache has moved on, the version our write replaced is forgotten.
    assert not writer.stale(KEY, before)


def test_a_conflicting_write_asks_for_a_retry_and_remembers_nothing() -> None:
    kube = FakeKube()
    writer = reconciling.StatusWriter(cast(Kube, kube), "TrainingJob")
    planned_from = stored(kube)["metadata"]
    stored(kube)  # someone else's write
    assert write(writer, planned_from, {}, {"phase": "Pending"}) == reconciling.CONFLICT_RETRY
    assert "status" not in kube.objects[("TrainingJob", "ns", "tj")]
    assert not writer.stale(KEY, planned_from)
    assert writer.hold(KEY, 60.0) is None


def test_progress_is_held_for_an_interval_after_a_write_and_forget_drops_it() -> None:
    kube = FakeKube()
    writer = reconciling.StatusWriter(cast(Kube, kube), "TrainingJob")
    meta = stored(kube)["metadata"]
    write(writer, meta, {}, {"phase": "Pending"})
    held = writer.hold(KEY, 60.0)
    assert held is not None
    assert 0 < held <= 60.0
    assert writer.hold(KEY, 0.0) is None
    writer.forget(KEY)
    assert writer.hold(KEY, 60.0) is None
    assert not writer.stale(KEY, meta)


def test_a_failed_reconcile_is_counted_and_raised() -> None:
    def errors() -> float:
        found = REGISTRY.get_sample_value("stratus_reconcile_errors_total", {"kind": "Test"})
        return found or 0.0

    async def broken() -> float | None:
        raise RuntimeError("API server unavailable")

    before = errors()
    with pytest.raises(RuntimeError):
        asyncio.run(reconciling.timed("Test", broken()))
    assert errors() - before == 1


def test_live_is_none_for_an_object_gone_or_being_deleted() -> None:
    obj = {"metadata": {"name": "tj"}}
    assert reconciling.live([obj]) is obj
    assert reconciling.live([]) is None
    assert reconciling.live([{"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}]) is None


def test_phases_are_counted_with_no_phase_as_pending() -> None:
    objs: dict[str, list[dict[str, Any]]] = {
        "a": [{"status": {"phase": "Running"}}],
        "b": [{}],
        "c": [{"status": {"phase": ""}}],
    }
    assert reconciling.count_phases(objs, lambda k: objs[k]) == {"Running": 1, "Pending": 2}


def test_a_namespace_being_deleted_ends_the_reconcile_quietly_without_a_retry() -> None:
    errors = REGISTRY.get_sample_value("stratus_reconcile_errors_total", {"kind": "Gone"}) or 0.0

    async def refused() -> float | None:
        raise NamespaceTerminating("namespace t-1 is going")

    assert asyncio.run(reconciling.timed("Gone", refused())) is None
    after = REGISTRY.get_sample_value("stratus_reconcile_errors_total", {"kind": "Gone"}) or 0.0
    assert after == errors


def test_a_refusal_because_the_namespace_terminates_is_told_apart() -> None:
    body = (
        '{"kind":"Status","reason":"Forbidden","details":{"causes":[{"reason":'
        '"NamespaceTerminating"}]}}'
    )
    manifest = {"metadata": {"name": "web-1", "namespace": "t-1"}}
    going = ApiException(status=403)
    going.body = body
    assert isinstance(kube_module._terminating(going, manifest), NamespaceTerminating)
    forbidden = ApiException(status=403)
    forbidden.body = '{"reason":"Forbidden"}'
    assert kube_module._terminating(forbidden, manifest) is None


def test_a_write_the_api_server_found_nothing_to_change_in_is_not_waited_for() -> None:
    # As when a patch removes a field the schema defaults back: no new version, no watch event.
    kube = FakeKube()
    writer = reconciling.StatusWriter(cast(Kube, kube), "TrainingJob")
    meta = kube.put({**resource("TrainingJob", "tj", {}), "status": {"phase": "Running"}})[
        "metadata"
    ]
    assert write(writer, meta, {"phase": "Pending"}, {"phase": "Running"}) is None
    assert [c.method for c in kube.calls] == ["patch_status"]
    assert not writer.stale(KEY, meta)
