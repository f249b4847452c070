"""Metering: the admin's price table, the usage block (settled time plus what runs, priced, and
refreshed at a bounded rate), a TrainingJob's GPU time split by capacity type, and the
counters' increments."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from stratus.api.inferenceservice import InferenceServiceStatus
from stratus.api.trainingjob import TrainingJobStatus
from stratus.config import SPOT_PRESETS, ConfigError, from_env
from stratus.cost import prices, usage
from stratus.cost.pods import MeteredPod, metered_pod
from stratus.cost.usage import GpuSeconds
from stratus.serving import planner as serving_planner
from stratus.training import planner
from tests.unit import test_serving_planner
from tests.unit.test_training_accounting import ran
from tests.unit.test_training_planner import NOW, job, observe, spec

TABLE = prices.parse(
    json.dumps(
        {
            "default": {"spot": 1.0, "onDemand": 3.0},
            "NVIDIA-H100-80GB-HBM3": {"spot": 2.5, "onDemand": 8.0},
        }
    ),
    "EUR",
)


# -- the price table -------------------------------------------------------------------------


def test_the_table_prices_a_listed_gpu_type_and_the_default_for_any_other() -> None:
    assert TABLE.key("NVIDIA-H100-80GB-HBM3") == "NVIDIA-H100-80GB-HBM3"
    assert TABLE.key("NVIDIA-A10G") == "default"
    assert TABLE.key(None) == "default"
    assert TABLE.price(None) == prices.Price(1.0, 3.0)
    assert TABLE.currency == "EUR"


def test_without_a_table_there_is_no_price_and_the_label_is_other() -> None:
    empty = prices.parse(None, None)
    assert (empty.currency, empty.price("x"), empty.key("x")) == ("USD", None, "other")


@pytest.mark.parametrize(
    ("raw", "currency", "says"),
    [
        ("{", "USD", "STRATUS_PRICES: not JSON"),
        ("[]", "USD", "STRATUS_PRICES: must map"),
        ('{"a100": {"spot": 1, "onDemand": 2}}', "USD", "needs a 'default' entry"),
        ('{"default": {"spot": 1}}', "USD", "default: must be {spot, onDemand}"),
        ('{"default": {"spot": -1, "onDemand": 2}}', "USD", "-1 is not a price"),
        ('{"default": {"spot": true, "onDemand": 2}}', "USD", "True is not a price"),
        ('{"default": {"spot": 1, "onDemand": 2}, "a b": {"spot": 1, "onDemand": 2}}', "USD",
         "'a b' is not a GPU type"),
        ("", "dollars", "STRATUS_CURRENCY: 'dollars' is not a currency code"),
    ],
)  # fmt: skip
def test_a_bad_table_is_refused_naming_the_variable(raw: str, currency: str, says: str) -> None:
    with pytest.raises(ConfigError, match=r"STRATUS_(PRICES|CURRENCY)") as error:
        from_env({"STRATUS_PRICES": raw, "STRATUS_CURRENCY": currency})
    assert says in str(error.value)


def test_the_operator_config_reads_the_table_and_bounded_cost_centers() -> None:
    config = from_env(
        {
            "STRATUS_PRICES": '{"default": {"spot": 1, "onDemand": 2}}',
            "STRATUS_COST_CENTERS": "cc-1, cc-2",
        }
    )
    assert config.prices.price(None) == prices.Price(1.0, 2.0)
    assert config.cost_centers == {"cc-1", "cc-2"}
    with pytest.raises(ConfigError, match="STRATUS_COST_CENTERS: 'a b' is not a label value"):
        from_env({"STRATUS_COST_CENTERS": "a b"})


# -- the usage block -------------------------------------------------------------------------


def test_figures_price_spot_and_on_demand_hours_and_the_savings() -> None:
    block = usage.figures(GpuSeconds(spot=7200, on_demand=3600), TABLE, "NVIDIA-H100-80GB-HBM3")
    assert block == {
        "gpuHours": {"spot": 2.0, "onDemand": 1.0},
        "gpuType": "NVIDIA-H100-80GB-HBM3",
        "cost": 2 * 2.5 + 8.0,
        "onDemandCost": 3 * 8.0,
        "savings": 3 * 8.0 - (2 * 2.5 + 8.0),
        "currency": "EUR",
    }


def test_without_a_table_usage_shows_gpu_hours_only() -> None:
    block = usage.figures(GpuSeconds(spot=1800), prices.PriceTable(), None)
    assert block == {"gpuHours": {"spot": 0.5, "onDemand": 0.0}}


def test_running_time_is_refreshed_at_most_every_interval_and_asks_to_come_back() -> None:
    status: dict[str, Any] = {}
    usage.settle(status, GpuSeconds(spot=3600), TABLE, None)
    assert usage.meter(None, status, GpuSeconds(on_demand=60), TABLE, None, NOW) == 30
    first = status["usage"]
    assert first["meteredAt"] == "2026-01-01T12:00:00.000Z"
    assert first["gpuHours"] == {"spot": 1.0, "onDemand": round(60 / 3600, 6)}
    # Ten seconds on: the block stays as it was (no write), and the next look is in 20s.
    again = {"usage": dict(first)}
    later = NOW + dt.timedelta(seconds=10)
    assert usage.meter(first, again, GpuSeconds(on_demand=70), TABLE, None, later) == 20
    assert again["usage"] == first
    # Past the interval: the running time moves.
    later = NOW + dt.timedelta(seconds=31)
    assert usage.meter(first, again, GpuSeconds(on_demand=91), TABLE, None, later) == 30
    assert again["usage"]["gpuHours"]["onDemand"] == round(91 / 3600, 6)
    assert again["usage"]["meteredAt"] == "2026-01-01T12:00:31.000Z"


def test_settled_time_is_written_at_once_and_an_idle_block_is_left_alone() -> None:
    status: dict[str, Any] = {}
    usage.meter(None, status, GpuSeconds(spot=60), TABLE, None, NOW)
    first = status["usage"]
    usage.settle(status, GpuSeconds(spot=65), TABLE, None)
    later = NOW + dt.timedelta(seconds=5)
    assert usage.meter(first, status, GpuSeconds(), TABLE, None, later) is None
    assert status["usage"]["endedGpuSeconds"] == {"spot": 65.0, "onDemand": 0.0}
    assert status["usage"]["meteredAt"] == "2026-01-01T12:00:05.000Z"
    # Nothing runs and nothing changed: no new meteredAt, so no write.
    settled = status["usage"]
    idle = {"usage": dict(settled)}
    usage.meter(settled, idle, GpuSeconds(), TABLE, None, later + dt.timedelta(hours=1))
    assert idle["usage"] == settled


def test_nothing_ever_ran_means_no_block() -> None:
    status: dict[str, Any] = {}
    assert usage.meter(None, status, GpuSeconds(), TABLE, None, NOW) is None
    assert "usage" not in status


def test_increments_are_what_a_write_added_per_capacity_type() -> None:
    old = usage.figures(GpuSeconds(spot=3600), TABLE, None)
    new = usage.figures(GpuSeconds(spot=5400, on_demand=3600), TABLE, None)
    assert usage.increments(old, new, TABLE) == [("spot", 0.5, 0.5), ("on-demand", 1.0, 3.0)]
    assert usage.increments(new, old, TABLE) == []
    assert usage.increments(None, usage.figures(GpuSeconds(spot=3600), prices.PriceTable(), None),
                            prices.PriceTable()) == [("spot", 1.0, None)]  # fmt: skip


CHEAPER = prices.parse(json.dumps({"default": {"spot": 0.5, "onDemand": 1.5}}), "EUR")


def test_settled_time_keeps_the_price_it_was_settled_at_and_only_the_running_part_moves() -> None:
    status: dict[str, Any] = {}
    usage.settle(status, GpuSeconds(spot=3600), TABLE, None)
    assert status["usage"]["endedCost"] == {
        "cost": 1.0, "onDemandCost": 3.0, "gpuSeconds": {"spot": 3600.0, "onDemand": 0.0}
    }  # fmt: skip
    # The admin lowers the prices: the settled hour keeps its price, the running one is
    # priced at the new table.
    usage.meter(None, status, GpuSeconds(on_demand=3600), CHEAPER, None, NOW)
    block = status["usage"]
    assert (block["cost"], block["onDemandCost"]) == (1.0 + 1.5, 3.0 + 1.5)
    assert block["savings"] == 4.5 - 2.5
    # That running hour ends: it is settled at the new table, and the next raise prices
    # neither hour again.
    usage.settle(status, GpuSeconds(on_demand=3600), CHEAPER, None)
    usage.meter(block, status, GpuSeconds(), TABLE, None, NOW)
    assert (status["usage"]["cost"], status["usage"]["onDemandCost"]) == (2.5, 4.5)


def test_a_status_from_before_ended_cost_is_priced_once_at_the_table_of_then() -> None:
    """Migration: written by an older build, the block has endedGpuSeconds but no endedCost."""
    old = {**usage.figures(GpuSeconds(spot=3600), TABLE, None)}
    old |= {"endedGpuSeconds": {"spot": 3600.0, "onDemand": 0.0},
            "meteredAt": "2026-01-01T12:00:00.000Z"}  # fmt: skip
    status: dict[str, Any] = {"usage": dict(old)}
    assert usage.meter(old, status, GpuSeconds(), TABLE, None, NOW) is None
    assert status["usage"]["endedCost"]["cost"] == 1.0  # written, though nothing else changed
    priced = status["usage"]
    later: dict[str, Any] = {"usage": dict(priced)}
    usage.meter(priced, later, GpuSeconds(), CHEAPER, None, NOW + dt.timedelta(hours=1))
    assert later["usage"]["cost"] == 1.0
    assert later["usage"] == priced


def test_time_settled_without_a_table_is_priced_at_the_first_table_after() -> None:
    status: dict[str, Any] = {}
    usage.settle(status, GpuSeconds(spot=3600), TABLE, None)
    usage.settle(status, GpuSeconds(spot=3600), prices.PriceTable(), None)
    usage.meter(None, status, GpuSeconds(), CHEAPER, None, NOW)
    assert status["usage"]["cost"] == 1.0 + 0.5
    assert status["usage"]["endedCost"]["gpuSeconds"]["spot"] == 7200


def test_pods_keep_the_price_of_each_interval_they_were_settled_in() -> None:
    a = metered(pod_obj("a", "2026-01-01T11:00:00Z"))
    status: dict[str, Any] = {}
    usage.meter_pods(None, status, (a,), (), TABLE, None, NOW)
    first = status["usage"]
    assert first["cost"] == 3.0
    later: dict[str, Any] = {"usage": dict(first)}
    usage.meter_pods(first, later, (a,), (), CHEAPER, None, NOW + dt.timedelta(hours=1))
    assert (later["usage"]["cost"], later["usage"]["onDemandCost"]) == (3.0 + 1.5, 3.0 + 1.5)


# -- a TrainingJob's GPU time by capacity type -----------------------------------------------


def plan_at(obs: planner.Observed, seconds: float = 0) -> planner.Plan:
    later = dataclasses.replace(obs, now=NOW + dt.timedelta(seconds=seconds))
    return planner.plan(later, SPOT_PRESETS["karpenter"], prices=TABLE)


def test_a_preempted_spot_attempt_and_its_on_demand_successor_are_metered_apart() -> None:
    s = spec(resources={"gpu": 2}, spot={"enabled": True, "fallbackToOnDemandAfter": 1})
    first = plan_at(observe(s))
    assert first.create[0]["metadata"]["labels"]["stratus.dev/capacity-type"] == "spot"
    spot_job = dataclasses.replace(job(1, failed="DisruptionTarget"), capacity="spot")
    # Ran from 11:58:00 to 11:58:30 (the Job failed at 11:59:00, after the pod stopped).
    dead = ran(1, "a", "2026-01-01T11:58:00Z", "2026-01-01T11:58:30Z", phase="Failed",
               deleted=True, disrupted=True)  # fmt: skip
    second = plan_at(observe(s, first.status, (spot_job,), (dead,)))
    assert second.status["attempt"] == 2
    created = second.create[-1]
    assert created["metadata"]["labels"]["stratus.dev/capacity-type"] == "on-demand"
    pod_labels = created["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["stratus.dev/capacity-type"] == "on-demand"
    assert second.status["usage"]["gpuHours"] == {"spot": round(60 / 3600, 6), "onDemand": 0.0}
    # Attempt 2 runs on demand since 11:59:00. Right after the last write its time is not
    # written yet; 31s later it is (91s, not settled), and the next look is due.
    demand = dataclasses.replace(job(2, ready=1), capacity="on-demand")
    running = ran(2, "b", "2026-01-01T11:59:00Z", None)
    soon = plan_at(observe(s, second.status, (demand,), (running,)), 5)
    assert soon.status["usage"] == second.status["usage"]
    assert soon.requeue_after == 25
    third = plan_at(observe(s, second.status, (demand,), (running,)), 31)
    block = third.status["usage"]
    assert block["gpuHours"] == {"spot": round(60 / 3600, 6), "onDemand": round(182 / 3600, 6)}
    assert block["endedGpuSeconds"] == {"spot": 60.0, "onDemand": 0.0}
    assert block["cost"] == round((60 * 1.0 + 182 * 3.0) / 3600, 4)
    assert block["savings"] == round(242 * 3.0 / 3600 - (60 * 1.0 + 182 * 3.0) / 3600, 4)
    assert third.requeue_after == usage.REFRESH_SECONDS
    TrainingJobStatus.model_validate(third.status)
    # It completes at 12:01:00: settled on demand, and nothing runs any more.
    done = dataclasses.replace(job(2, complete=True), capacity="on-demand")
    finished = ran(2, "b", "2026-01-01T11:59:00Z", "2026-01-01T12:01:00Z", phase="Succeeded")
    last = plan_at(observe(s, third.status, (done,), (finished,)), 60)
    assert last.status["phase"] == "Succeeded"
    assert last.status["usage"]["endedGpuSeconds"] == {"spot": 60.0, "onDemand": 240.0}
    assert last.status["usage"]["gpuHours"]["onDemand"] == round(240 / 3600, 6)
    assert last.status["gpuSeconds"] == 300


def test_editing_gpu_type_to_a_cheaper_entry_does_not_reprice_ended_attempts() -> None:
    h100 = {"gpu": 2, "gpuType": "NVIDIA-H100-80GB-HBM3"}
    s = spec(resources=h100, spot={"enabled": True, "fallbackToOnDemandAfter": 1})
    first = plan_at(observe(s))
    spot_job = dataclasses.replace(job(1, failed="DisruptionTarget"), capacity="spot")
    dead = ran(1, "a", "2026-01-01T11:58:00Z", "2026-01-01T11:58:30Z", phase="Failed",
               deleted=True, disrupted=True)  # fmt: skip
    second = plan_at(observe(s, first.status, (spot_job,), (dead,)))
    assert second.status["usage"]["cost"] == round(60 * 2.5 / 3600, 4)
    # The tenant edits resources.gpuType away (the default entry is cheaper): the ended spot
    # minute keeps its H100 price; only the running attempt is priced at the default entry.
    cheaper = spec(resources={"gpu": 2}, spot={"enabled": True, "fallbackToOnDemandAfter": 1})
    demand = dataclasses.replace(job(2, ready=1), capacity="on-demand")
    running = ran(2, "b", "2026-01-01T11:59:00Z", None)
    third = plan_at(observe(cheaper, second.status, (demand,), (running,)), 31)
    assert third.status["usage"]["cost"] == round((60 * 2.5 + 182 * 3.0) / 3600, 4)
    assert third.status["usage"]["onDemandCost"] == round((60 * 8.0 + 182 * 3.0) / 3600, 4)


# -- an InferenceService's pods ----------------------------------------------------------------


def pod_obj(
    uid: str,
    started: str | None,
    finished: str | None = None,
    gpus: int = 1,
    spot: bool = False,
    containers: int = 1,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "resources": {"limits": {"nvidia.com/gpu": gpus}}}
                       for i in range(containers)]
    }  # fmt: skip
    if spot:
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "karpenter.sh/capacity-type", "operator": "In",
                                 "values": ["spot"]}
                            ]
                        }
                    ]
                }
            }
        }  # fmt: skip
    state: dict[str, Any] = {}
    if started and finished:
        state = {"terminated": {"startedAt": started, "finishedAt": finished}}
    elif started:
        state = {"running": {"startedAt": started}}
    return {
        "metadata": {"name": f"web-{uid}", "uid": uid},
        "spec": spec,
        "status": {"containerStatuses": [{"state": state} for _ in range(containers)]},
    }


def metered(obj: dict[str, Any]) -> MeteredPod:
    found = metered_pod(obj, "karpenter.sh/capacity-type", "spot")
    assert found is not None
    return found


def test_a_pod_is_metered_from_its_containers_start_with_its_gpus_and_placement() -> None:
    pod = metered(pod_obj("a", "2026-01-01T11:00:00Z", gpus=2, containers=2))
    assert (pod.gpus, pod.capacity, pod.finished) == (4, "on-demand", None)
    assert pod.seconds(None, NOW) == 3600 * 4
    assert pod.seconds(NOW - dt.timedelta(minutes=1), NOW) == 60 * 4
    spot = metered(pod_obj("b", "2026-01-01T11:00:00Z", "2026-01-01T11:30:00Z", spot=True))
    assert (spot.capacity, spot.seconds(None, NOW)) == ("spot", 1800)
    # No GPU, or never ran: nothing to meter.
    assert metered_pod(pod_obj("c", "2026-01-01T11:00:00Z", gpus=0), "k", "v") is None
    assert metered_pod(pod_obj("d", None), "k", "v") is None


def test_pods_are_settled_interval_by_interval_so_a_deleted_one_keeps_its_time() -> None:
    a = metered(pod_obj("a", "2026-01-01T11:59:00Z"))
    b = metered(pod_obj("b", "2026-01-01T11:59:30Z", spot=True))
    status: dict[str, Any] = {}
    assert usage.meter_pods(None, status, (a, b), (), TABLE, None, NOW) == 30
    first = status["usage"]
    assert first["endedGpuSeconds"] == {"spot": 30.0, "onDemand": 60.0}
    # 10s later nothing is written (the block stays), unless a pod went away.
    later = NOW + dt.timedelta(seconds=10)
    quiet: dict[str, Any] = {"usage": dict(first)}
    assert usage.meter_pods(first, quiet, (a, b), (), TABLE, None, later) == 20
    assert quiet["usage"] == first
    # b was deleted, stopping at 12:00:10: settled at once, up to its stop.
    b_gone = metered(pod_obj("b", "2026-01-01T11:59:30Z", "2026-01-01T12:00:10Z", spot=True))
    after: dict[str, Any] = {"usage": dict(first)}
    later = NOW + dt.timedelta(seconds=12)
    usage.meter_pods(first, after, (a,), (b_gone,), TABLE, None, later)
    assert after["usage"]["endedGpuSeconds"] == {"spot": 40.0, "onDemand": 72.0}
    assert after["usage"]["gpuHours"] == {"spot": round(40 / 3600, 6), "onDemand": 0.02}
    # The next refresh adds only what a ran since: the intervals never overlap.
    second = after["usage"]
    last: dict[str, Any] = {"usage": dict(second)}
    usage.meter_pods(second, last, (a,), (), TABLE, None, NOW + dt.timedelta(seconds=60))
    assert last["usage"]["endedGpuSeconds"] == {"spot": 40.0, "onDemand": 120.0}
    assert last["usage"]["cost"] == round((40 * 1.0 + 120 * 3.0) / 3600, 4)


def test_an_inferenceservice_status_meters_every_revisions_pods() -> None:
    s = test_serving_planner.spec(replicas={"min": 2, "max": 2})
    pods = (
        metered(pod_obj("a", "2026-01-01T11:00:00Z")),
        metered(pod_obj("b", "2026-01-01T11:30:00Z", spot=True)),
    )
    obs = test_serving_planner.observe(s, {}, {}, gpu_pods=pods, prices=TABLE)
    plan = serving_planner.plan(obs)
    assert plan.status["usage"]["gpuHours"] == {"spot": 0.5, "onDemand": 1.0}
    assert plan.status["usage"]["currency"] == "EUR"
    assert plan.requeue_after is not None
    assert plan.requeue_after <= usage.REFRESH_SECONDS
    InferenceServiceStatus.model_validate(plan.status)


def test_a_pod_the_last_write_did_not_count_is_counted_from_its_start() -> None:
    """Start times are whole seconds: c says it started at 12:00:00, but it was not running yet
    when the last write (at 12:00:00.500, knowing only a) was made."""
    a = metered(pod_obj("a", "2026-01-01T11:59:00Z"))
    c = metered(pod_obj("c", "2026-01-01T12:00:00Z"))
    previous = {**usage.figures(GpuSeconds(on_demand=60.5), TABLE, None)}
    previous |= {"endedGpuSeconds": {"spot": 0.0, "onDemand": 60.5}}
    previous["meteredAt"] = "2026-01-01T12:00:00.500Z"
    status: dict[str, Any] = {"usage": dict(previous)}
    later = NOW + dt.timedelta(seconds=40)
    usage.meter_pods(previous, status, (a, c), (), TABLE, None, later, frozenset({"a"}))
    assert status["usage"]["endedGpuSeconds"]["onDemand"] == 100 + 40
    # Not knowing what the last write counted (a restart), every pod counts from meteredAt.
    status = {"usage": dict(previous)}
    usage.meter_pods(previous, status, (a, c), (), TABLE, None, later)
    assert status["usage"]["endedGpuSeconds"]["onDemand"] == 100 + 39.5


# -- metering on real time, not the operator's moved clock -------------------------------------

MONTH = dt.timedelta(days=30)


def test_a_trainingjob_is_metered_on_real_time_while_the_clock_is_moved_a_month_on() -> None:
    s = spec(resources={"gpu": 2})
    first = plan_at(observe(s))
    running = ran(1, "a", "2026-01-01T11:59:00Z", None)
    obs = observe(s, first.status, (job(1, ready=1),), (running,))
    moved = dataclasses.replace(obs, now=NOW + MONTH, real_time=NOW)
    block = planner.plan(moved, SPOT_PRESETS["karpenter"], prices=TABLE).status["usage"]
    assert block["gpuHours"]["onDemand"] == round(120 / 3600, 6)
    assert block["meteredAt"] == "2026-01-01T12:00:00.000Z"
    # Its deadline (on the operator's clock) ends it: settled up to the real time too.
    limited = dataclasses.replace(moved, spec=spec(resources={"gpu": 2}, activeDeadlineSeconds=60))
    ended = planner.plan(limited, SPOT_PRESETS["karpenter"], prices=TABLE)
    assert ended.status["phase"] == "Failed"
    assert ended.status["usage"]["endedGpuSeconds"]["onDemand"] == 120


def test_a_meteredat_left_in_the_future_by_a_moved_clock_does_not_freeze_metering() -> None:
    a = metered(pod_obj("a", "2026-01-01T11:59:00Z"))
    ahead = {**usage.figures(GpuSeconds(on_demand=60), TABLE, None)}
    ahead |= {"endedGpuSeconds": {"spot": 0.0, "onDemand": 60.0},
              "meteredAt": "2026-01-31T12:00:00.000Z"}  # fmt: skip
    status: dict[str, Any] = {"usage": dict(ahead)}
    assert usage.meter_pods(ahead, status, (a,), (), TABLE, None, NOW) == 30
    assert status["usage"]["meteredAt"] == "2026-01-01T12:00:00.000Z"
    again: dict[str, Any] = {"usage": dict(status["usage"])}
    later = NOW + dt.timedelta(seconds=31)
    usage.meter_pods(status["usage"], again, (a,), (), TABLE, None, later)
    assert again["usage"]["endedGpuSeconds"]["onDemand"] == 60 + 31
    # A TrainingJob's block is rewritten at the real time as well.
    training: dict[str, Any] = {"usage": dict(ahead)}
    usage.meter(ahead, training, GpuSeconds(on_demand=90), TABLE, None, NOW)
    assert training["usage"]["meteredAt"] == "2026-01-01T12:00:00.000Z"


def test_an_inferenceservice_is_metered_on_real_time_while_the_clock_is_moved() -> None:
    s = test_serving_planner.spec(replicas={"min": 1, "max": 1})
    pods = (metered(pod_obj("a", "2026-01-01T11:00:00Z")),)
    obs = test_serving_planner.observe(s, {}, {}, now=NOW + MONTH, gpu_pods=pods, prices=TABLE,
                                       real_time=NOW)  # fmt: skip
    block = serving_planner.plan(obs).status["usage"]
    assert block["gpuHours"]["onDemand"] == 1.0
    assert block["meteredAt"] == "2026-01-01T12:00:00.000Z"


# -- the refresh interval grows with the number of workloads ---------------------------------


def test_the_refresh_interval_keeps_a_kinds_refreshes_under_the_rate() -> None:
    assert usage.refresh_interval(0) == usage.REFRESH_SECONDS
    assert usage.refresh_interval(30) == usage.REFRESH_SECONDS
    assert usage.refresh_interval(2000) == 2000 / usage.MAX_REFRESHES_PER_SECOND
    for count in (121, 500, 2000, 20000):
        assert count / usage.refresh_interval(count) <= usage.MAX_REFRESHES_PER_SECOND


def test_both_planners_refresh_running_usage_at_the_interval_they_are_given() -> None:
    s = spec(resources={"gpu": 1})
    first = plan_at(observe(s))
    running = dataclasses.replace(job(1), active=1, ready=1)
    pod = ran(1, "a", "2026-01-01T11:00:00Z", None, phase="Running")
    obs = dataclasses.replace(observe(s, first.status, (running,), (pod,)), usage_refresh=500.0)
    assert planner.plan(obs, SPOT_PRESETS["karpenter"], prices=TABLE).requeue_after == 500.0

    serving = test_serving_planner.observe(
        test_serving_planner.spec(replicas={"min": 1, "max": 1}),
        {},
        {},
        gpu_pods=(metered(pod_obj("a", "2026-01-01T11:00:00Z")),),
        prices=TABLE,
    )
    assert serving_planner.plan(serving).requeue_after == usage.REFRESH_SECONDS
    slower = dataclasses.replace(serving, usage_refresh=500.0)
    assert serving_planner.plan(slower).requeue_after == 500.0
