"""Whether the cluster serves a kind (KEDA's ScaledObject) is answered from a cache with a TTL,
looked up off the event loop: a reconcile never blocks on discovery, and KEDA installed later
is still noticed without a change to the spec."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError

from stratus.kube import ABSENT_RECHECK, KIND_PRESENT_TTL, KindCache, Kube
from stratus.serving import planner
from stratus.serving.revision import revision_of
from tests.unit.test_serving_planner import condition, observe, spec

KEDA = ("keda.sh/v1alpha1", "ScaledObject")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Discovery:
    """A fake lookup: whether KEDA is installed, and the threads it was asked from."""

    def __init__(self, installed: bool = False) -> None:
        self.installed = installed
        self.threads: list[threading.Thread] = []
        self.failing = False

    def __call__(self, api_version: str, kind: str) -> bool:
        self.threads.append(threading.current_thread())
        if self.failing:
            raise ApiException(status=503, reason="Service Unavailable")
        return self.installed and (api_version, kind) == KEDA


def ask(cache: KindCache, times: int = 1) -> list[bool]:
    async def main() -> list[bool]:
        return [await cache.served(*KEDA) for _ in range(times)]

    return asyncio.run(main())


def test_an_absent_kind_is_looked_up_again_after_its_ttl_and_keda_installed_later_is_seen() -> None:
    clock, discovery = Clock(), Discovery(installed=False)
    cache = KindCache(discovery, clock=clock)
    assert ask(cache, times=5) == [False] * 5
    assert len(discovery.threads) == 1  # every reconcile within the TTL: no discovery at all
    discovery.installed = True
    clock.now += ABSENT_RECHECK - 1
    assert ask(cache) == [False]
    clock.now += 1
    assert ask(cache) == [True]
    assert len(discovery.threads) == 2


def test_a_present_kind_is_believed_for_longer_and_its_removal_is_seen() -> None:
    clock, discovery = Clock(), Discovery(installed=True)
    cache = KindCache(discovery, clock=clock)
    assert ask(cache) == [True]
    discovery.installed = False
    clock.now += KIND_PRESENT_TTL - 1
    assert ask(cache, times=3) == [True] * 3
    assert len(discovery.threads) == 1
    clock.now += 1
    assert ask(cache) == [False]


def test_the_lookup_runs_off_the_event_loop_and_callers_share_it() -> None:
    release = threading.Event()
    calls: list[threading.Thread] = []

    def slow(api_version: str, kind: str) -> bool:
        calls.append(threading.current_thread())
        if not release.wait(timeout=5):
            raise AssertionError("the event loop was blocked while discovery ran")
        return True

    cache = KindCache(slow, clock=Clock())

    async def main() -> list[bool]:
        waiting = [asyncio.ensure_future(cache.served(*KEDA)) for _ in range(3)]
        # The loop keeps running while the lookup is in flight: it is the one that releases it.
        for _ in range(5):
            await asyncio.sleep(0)
        assert not any(w.done() for w in waiting)
        release.set()
        return list(await asyncio.gather(*waiting))

    assert asyncio.run(main()) == [True, True, True]
    assert len(calls) == 1
    assert calls[0] is not threading.main_thread()


def test_a_failed_lookup_is_not_remembered() -> None:
    discovery = Discovery(installed=True)
    discovery.failing = True
    cache = KindCache(discovery, clock=Clock())
    with pytest.raises(ApiException):
        ask(cache)
    discovery.failing = False
    assert ask(cache) == [True]
    assert len(discovery.threads) == 2


# -- the lookup itself: one request for the group version, never the whole discovery ----------


class FakeDynamic:
    def __init__(self, served: dict[str, list[str]]) -> None:
        self.served = served
        self.paths: list[str] = []
        self.resources = self

    def request(self, method: str, path: str, **params: Any) -> dict[str, Any]:
        self.paths.append(path)
        if path not in self.served:
            raise NotFoundError(ApiException(status=404, reason="Not Found"))
        return {"resources": [{"kind": kind} for kind in self.served[path]]}

    def get(self, api_version: str, kind: str) -> object:
        return (api_version, kind)


def kube_with(dynamic: FakeDynamic) -> Kube:
    kube = Kube.__new__(Kube)
    kube._dynamic = dynamic
    kube._resources = {}
    kube._discovery = threading.Lock()
    kube._kinds = KindCache(kube._served)
    return kube


def test_kube_looks_up_only_the_kinds_group_version() -> None:
    dynamic = FakeDynamic({"/apis/keda.sh/v1alpha1": ["ScaledObject", "TriggerAuthentication"]})
    kube = kube_with(dynamic)

    async def main() -> list[bool]:
        return [
            await kube.has_kind(*KEDA),
            await kube.has_kind(*KEDA),
            await kube.has_kind("keda.sh/v1alpha1", "ScaledJob"),
            await kube.has_kind("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ]

    assert asyncio.run(main()) == [True, True, False, False]
    assert dynamic.paths == [
        "/apis/keda.sh/v1alpha1",
        "/apis/keda.sh/v1alpha1",
        "/apis/gateway.networking.k8s.io/v1",
    ]
    # A kind found is resolved for writes too: its first apply does no discovery on the loop.
    assert KEDA in kube._resources


# -- the planner looks again while KEDA is missing ----------------------------------------------


def test_without_keda_the_plan_asks_to_look_again_soon() -> None:
    s = spec(
        replicas={"min": 2, "max": 8},
        autoscaling={"metric": "prometheus", "target": 10, "query": "sum(up)"},
    )
    status = planner.plan(observe(s, {}, {})).status
    plan = planner.plan(observe(s, status, {revision_of(s): 2}))
    assert condition(plan.status, "Autoscaling")["reason"] == "KEDANotInstalled"
    assert plan.requeue_after is not None
    assert plan.requeue_after <= ABSENT_RECHECK
    keda = planner.plan(observe(s, status, {revision_of(s): 2}, keda=True))
    assert keda.requeue_after is None
