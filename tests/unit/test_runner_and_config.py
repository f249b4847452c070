"""The keyed work queue and the operator's configuration."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

import pytest

from stratus import config
from stratus.kube import TokenBucket
from stratus.runner import KeyedRunner


def test_work_for_one_key_never_overlaps_and_triggers_coalesce() -> None:
    calls: list[Hashable] = []
    running: set[Hashable] = set()

    async def work(key: Hashable) -> None:
        assert key not in running
        running.add(key)
        calls.append(key)
        await asyncio.sleep(0.01)
        running.discard(key)

    async def scenario() -> None:
        runner = KeyedRunner(work)
        runner.trigger("a")
        runner.trigger("b")
        await asyncio.sleep(0.001)  # "a" is running now
        for _ in range(5):
            runner.trigger("a")
        await runner.idle()

    asyncio.run(scenario())
    assert calls.count("a") == 2  # the first run, then one more for all triggers meanwhile
    assert calls.count("b") == 1


def test_failures_retry_with_backoff_and_requeue_after_delays() -> None:
    attempts: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        async def work(_key: Hashable) -> float | None:
            attempts.append(loop.time())
            if len(attempts) < 3:
                raise RuntimeError("API server unavailable")
            if len(attempts) == 3:
                return 0.05
            done.set()
            return None

        runner = KeyedRunner(work, base_backoff=0.01)
        runner.trigger("k")
        await asyncio.wait_for(done.wait(), timeout=5)

    asyncio.run(scenario())
    assert len(attempts) == 4
    assert attempts[3] - attempts[2] >= 0.05


def test_spot_presets_and_overrides() -> None:
    assert config.from_env({}).spot.label == "karpenter.sh/capacity-type"
    assert config.from_env({"STRATUS_SPOT_PRESET": "eks"}).spot.spot_value == "SPOT"
    custom = config.from_env(
        {"STRATUS_SPOT_LABEL": "pool=preemptible", "STRATUS_SPOT_TAINT": "preemptible=yes"}
    )
    assert (custom.spot.label, custom.spot.spot_value, custom.spot.taint_value) == (
        "pool",
        "preemptible",
        "yes",
    )
    assert config.from_env({"STRATUS_NAMESPACES": "a,b"}).namespaces == ("a", "b")


def test_a_bad_setting_names_the_variable() -> None:
    with pytest.raises(config.ConfigError, match="STRATUS_SPOT_PRESET"):
        config.from_env({"STRATUS_SPOT_PRESET": "gcp"})
    with pytest.raises(config.ConfigError, match="STRATUS_METRICS_PORT"):
        config.from_env({"STRATUS_METRICS_PORT": "http"})
    with pytest.raises(config.ConfigError, match="STRATUS_HEALTH_PORT"):
        config.from_env({"STRATUS_HEALTH_PORT": "next"})
    assert config.from_env({"STRATUS_HEALTH_PORT": "9000"}).health_port == 9000


def test_urgent_work_takes_the_next_free_slot_before_earlier_work() -> None:
    order: list[str] = []

    async def scenario() -> None:
        gate = asyncio.Event()

        async def work(key: Hashable) -> None:
            order.append(str(key))
            if key == "busy":
                await gate.wait()

        runner = KeyedRunner(work, concurrency=1)
        runner.trigger("busy")
        await asyncio.sleep(0)
        for key in ("old-1", "old-2"):
            runner.trigger(key)
        runner.trigger("new", urgent=True)
        await asyncio.sleep(0)
        gate.set()
        await runner.idle()

    asyncio.run(scenario())
    assert order == ["busy", "new", "old-1", "old-2"]


def test_event_rate_allows_a_burst_then_spaces_the_rest() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    bucket = TokenBucket(rate=10.0, burst=3, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        bucket.take()
    assert slept == [0.1, 0.1]
    now[0] += 10.0  # a long quiet spell refills the burst, and no more
    for _ in range(4):
        bucket.take()
    assert slept == [0.1, 0.1, 0.1]


def test_peering_priority_is_random_unless_set() -> None:
    assert config.from_env({}).peering_priority is None
    assert config.from_env({"STRATUS_PEERING_PRIORITY": "7"}).peering_priority == 7
    with pytest.raises(config.ConfigError, match="STRATUS_PEERING_PRIORITY"):
        config.from_env({"STRATUS_PEERING_PRIORITY": "high"})
