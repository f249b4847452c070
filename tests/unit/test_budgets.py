"""Budgets, pure: window bounds (calendar month and ISO week, rolling days, time zones, DST), the
usage ledger (baselines, rollover, deleted workloads, its bound), the status at the soft and hard
edges, and the training gate and estimate advice."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from stratus import metrics
from stratus.api import resources
from stratus.api.budget import MAX_LEDGER_ENTRIES as MAX
from stratus.api.budget import BudgetStatus, BudgetWindow
from stratus.budgets import gate, planner
from stratus.budgets.ledger import Amounts, WorkloadUsage, workload_usage
from stratus.budgets.window import period_at, window_at
from stratus.config import SPOT_PRESETS
from stratus.cost.prices import Price, PriceTable
from stratus.training import planner as training_planner
from tests.cases import BUDGET, INLINE, with_change
from tests.unit.test_training_planner import job, observe, pod, spec


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)


def window(**fields: Any) -> BudgetWindow:
    return BudgetWindow.model_validate(fields)


# -- windows -------------------------------------------------------------------------------------


def test_a_calendar_month_runs_from_local_midnight_on_the_first_across_dst() -> None:
    month = window(type="CalendarMonth", timeZone="Europe/Berlin")
    bounds = window_at(month, utc(2026, 3, 15, 12))
    # CET (+1) at the start, CEST (+2) at the end: 31 days less the hour DST took.
    assert (bounds.start, bounds.end) == (utc(2026, 2, 28, 23), utc(2026, 3, 31, 22))
    assert bounds.end - bounds.start == dt.timedelta(days=31, hours=-1)


def test_the_month_rolls_over_at_its_end_exactly_and_across_the_year() -> None:
    month = window(type="CalendarMonth")
    assert window_at(month, utc(2026, 12, 31, 23, 59, 59)).start == utc(2026, 12, 1)
    turned = window_at(month, utc(2027, 1, 1))
    assert (turned.start, turned.end) == (utc(2027, 1, 1), utc(2027, 2, 1))
    assert window_at(month, utc(2028, 2, 10)).end == utc(2028, 3, 1)  # a leap year


def test_an_iso_week_starts_on_a_local_monday() -> None:
    week = window(type="CalendarWeek", timeZone="America/New_York")
    bounds = window_at(week, utc(2026, 3, 29, 12))  # a Sunday
    assert (bounds.start, bounds.end) == (utc(2026, 3, 23, 4), utc(2026, 3, 30, 4))
    # Sunday 23:30 UTC is already Monday 01:30 in Berlin: a new week there.
    berlin = window(type="CalendarWeek", timeZone="Europe/Berlin")
    assert window_at(berlin, utc(2026, 3, 29, 23, 30)).start == utc(2026, 3, 29, 22)


def test_a_rolling_window_is_its_last_days_in_whole_local_days() -> None:
    rolling = window(type="RollingDays", days=7)
    now = utc(2026, 1, 10, 15)
    bounds = window_at(rolling, now)
    assert (bounds.start, bounds.end) == (utc(2026, 1, 4), utc(2026, 1, 11))
    assert period_at(rolling, now).start == utc(2026, 1, 10)
    assert period_at(window(type="CalendarMonth"), now) == window_at(window(), now)


def test_dst_days_are_23_or_25_hours_and_a_skipped_midnight_starts_at_the_gap_end() -> None:
    berlin = window(type="RollingDays", days=1, timeZone="Europe/Berlin")
    autumn = period_at(berlin, utc(2026, 10, 25, 12))
    assert autumn.end - autumn.start == dt.timedelta(hours=25)
    spring = period_at(berlin, utc(2026, 3, 29, 12))
    assert spring.end - spring.start == dt.timedelta(hours=23)
    # Santiago skips 00:00-01:00 on 6 September 2026: that day starts at 01:00 (-03).
    santiago = window(type="RollingDays", days=1, timeZone="America/Santiago")
    assert period_at(santiago, utc(2026, 9, 6, 12)).start == utc(2026, 9, 6, 4)


def test_an_unknown_time_zone_is_refused_naming_the_field() -> None:
    obj = with_change(INLINE[BUDGET], "spec.window.timeZone", "Mars/Olympus_Mons")
    with pytest.raises(resources.InvalidResourceError) as refused:
        resources.validate(obj)
    assert str(refused.value).startswith("spec.window.timeZone: unknown time zone")
    plan = planner.plan(obj["spec"], {}, 2, [], utc(2026, 1, 1))
    (ready,) = plan.status["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"].startswith("spec.window.timeZone: unknown time zone 'Mars/")


# -- the ledger and the status -------------------------------------------------------------------

MONTH_START = utc(2026, 3, 1)
BEFORE = utc(2026, 2, 10)


def budget_spec(**changes: Any) -> dict[str, Any]:
    spec_: dict[str, Any] = {
        "teams": ["nlp"],
        "namespaces": ["research"],
        "limit": {"gpuHours": 10},
    }
    return {**spec_, **changes}


def usage(
    name: str,
    hours: float,
    *,
    namespace: str = "research",
    team: str | None = None,
    created: dt.datetime = BEFORE,
    finished: bool = False,
    cost: float = 0.0,
    kind: str = "TrainingJob",
) -> WorkloadUsage:
    return WorkloadUsage(
        uid=f"uid-{name}",
        kind=kind,
        namespace=namespace,
        name=name,
        team=team,
        created=created,
        finished=finished,
        usage=Amounts(hours, cost),
        currency="USD" if cost else None,
    )


def run(
    workloads: list[WorkloadUsage],
    now: dt.datetime,
    status: dict[str, Any] | None = None,
    **changes: Any,
) -> planner.Plan:
    return planner.plan(budget_spec(**changes), status or {}, 1, workloads, now)


def test_usage_in_the_window_is_cumulative_now_less_the_baseline() -> None:
    now = utc(2026, 3, 5)
    first = run([usage("old", 40.0), usage("new", 1.5, created=utc(2026, 3, 2))], now)
    # Created before the window and first seen now: its 40 h are not this window's.
    assert first.status["used"] == {"gpuHours": 1.5, "amount": 0.0}
    later = run([usage("old", 42.0), usage("new", 2.0, created=utc(2026, 3, 2))], now, first.status)
    assert later.status["used"]["gpuHours"] == pytest.approx(4.0)
    assert later.status["remaining"] == pytest.approx(6.0)
    assert later.status["percentUsed"] == pytest.approx(40.0)
    assert later.status["windowStart"] == "2026-03-01T00:00:00Z"
    assert later.status["windowEnd"] == "2026-04-01T00:00:00Z"


def test_a_workload_is_covered_by_its_namespace_or_its_team() -> None:
    in_window = utc(2026, 3, 2)
    plan = run(
        [
            usage("by-namespace", 1.0, created=in_window),
            usage("by-team", 2.0, namespace="other", team="nlp", created=in_window),
            usage("neither", 4.0, namespace="other", team="vision", created=in_window),
        ],
        utc(2026, 3, 5),
    )
    assert plan.status["used"]["gpuHours"] == pytest.approx(3.0)
    assert [c["name"] for c in plan.status["topConsumers"]] == ["by-team", "by-namespace"]
    assert plan.status["topConsumers"][0] == {
        "namespace": "other",
        "kind": "TrainingJob",
        "name": "by-team",
        "team": "nlp",
        "gpuHours": 2.0,
        "amount": 0.0,
    }


def test_a_deleted_workload_leaves_its_usage_in_retired() -> None:
    now = utc(2026, 3, 5)
    first = run([usage("a", 3.0, created=utc(2026, 3, 2)), usage("b", 1.0)], now)
    second = run([usage("a", 3.0, created=utc(2026, 3, 2)), usage("b", 2.0)], now, first.status)
    assert second.status["used"]["gpuHours"] == pytest.approx(4.0)
    gone = run([usage("b", 2.5)], now, second.status)
    assert gone.status["retired"] == {"gpuHours": 3.0, "amount": 0.0}
    assert gone.status["used"]["gpuHours"] == pytest.approx(4.5)
    assert [e["name"] for e in gone.status["ledger"]] == ["b"]


def test_at_rollover_baselines_move_to_the_last_figures_and_the_count_restarts() -> None:
    march = run([usage("a", 8.0, created=utc(2026, 3, 2))], utc(2026, 3, 31, 23, 59, 50))
    # 0.5 h more by the first pass of April: that growth is April's, the rest was March's.
    april = run([usage("a", 8.5, created=utc(2026, 3, 2))], utc(2026, 4, 1, 0, 0, 5), march.status)
    assert april.status["windowStart"] == "2026-04-01T00:00:00Z"
    assert april.status["used"]["gpuHours"] == pytest.approx(0.5)
    assert april.status["retired"] == {"gpuHours": 0.0, "amount": 0.0}
    (entry,) = april.status["ledger"]
    assert entry["base"]["gpuHours"] == 8.0


def test_the_ledger_keeps_only_workloads_whose_figure_can_still_move_or_moved() -> None:
    now = utc(2026, 3, 5)
    plan = run(
        [
            usage("done-long-ago", 50.0, finished=True),
            usage("done-this-month", 2.0, created=utc(2026, 3, 2), finished=True),
            usage("running", 1.0),
        ],
        now,
    )
    assert [e["name"] for e in plan.status["ledger"]] == ["done-this-month", "running"]


def test_workloads_that_used_nothing_in_the_period_have_no_entry_and_lose_nothing() -> None:
    now = utc(2026, 3, 5)
    held = [usage(f"held{i}", 0.0, created=utc(2026, 3, 2)) for i in range(3000)]
    old_idle = usage("old-idle", 0.0)
    first = run([*held, old_idle, usage("done", 5.0, finished=True)], now)
    assert first.status["ledger"] == []
    # Each is counted from zero once it starts: it had used nothing when last seen.
    started = [usage("held0", 0.5, created=utc(2026, 3, 2)), usage("old-idle", 0.25)]
    second = run([*started, usage("done", 5.0, finished=True)], now, first.status)
    assert second.status["used"]["gpuHours"] == pytest.approx(0.75)
    # One that was running when last seen and finished since is counted too.
    job_ = dataclasses.replace(old_idle, usage=Amounts(0.0, 0.0))
    quick = dataclasses.replace(job_, uid="uid-quick", name="quick")
    third = run([quick], now, first.status)
    done = dataclasses.replace(quick, usage=Amounts(1.0, 0.0), finished=True, finished_at=now)
    assert run([done], now, third.status).status["used"]["gpuHours"] == pytest.approx(1.0)
    # A changed spec may newly cover a workload: its usage before now is not placed here.
    assert run([usage("old-idle", 7.0)], now, {**first.status, "observedGeneration": 0}).status[
        "used"
    ]["gpuHours"] == pytest.approx(0.0)


def test_a_full_ledger_folds_its_smallest_consumers_into_retired_and_counts_nothing_twice() -> None:
    now = utc(2026, 3, 5)
    created = utc(2026, 3, 2)
    many = [usage(f"w{i:04}", 1.0 + i / 10000, created=created) for i in range(MAX + 5)]
    full = run(many, now, limit={"gpuHours": 100000})
    assert len(full.status["ledger"]) == MAX
    assert "w0000" not in {e["name"] for e in full.status["ledger"]}
    assert full.status["used"]["gpuHours"] == pytest.approx(sum(w.usage.gpu_hours for w in many))
    ledger_full = condition(full.status, "LedgerFull")
    assert (ledger_full["status"], ledger_full["reason"]) == ("True", "Full")
    assert ledger_full["message"].startswith("5 more workloads")
    again = run(many, now, full.status, limit={"gpuHours": 100000})
    assert again.status["used"] == full.status["used"]
    fewer = run(many[:MAX], now, again.status, limit={"gpuHours": 100000})
    assert condition(fewer.status, "LedgerFull")["status"] == "False"
    assert fewer.status["used"] == full.status["used"]
    BudgetStatus.model_validate(fewer.status)


def test_top_consumers_are_bounded() -> None:
    created = utc(2026, 3, 2)
    plan = run([usage(f"w{i}", float(i), created=created) for i in range(1, 9)], utc(2026, 3, 5))
    assert [c["name"] for c in plan.status["topConsumers"]] == ["w8", "w7", "w6", "w5", "w4"]
    assert len(plan.status["ledger"]) == 8


def test_a_rolling_window_forgets_days_that_fell_out_of_it() -> None:
    rolling = {"type": "RollingDays", "days": 2}
    created = utc(2026, 3, 1)
    day1 = run([usage("a", 1.0, created=created)], utc(2026, 3, 1, 12), window=rolling)
    day2 = run([usage("a", 3.0, created=created)], utc(2026, 3, 2, 12), day1.status, window=rolling)
    assert day2.status["history"] == [
        {"start": "2026-03-01T00:00:00Z", "gpuHours": 1.0, "amount": 0.0}
    ]
    assert day2.status["used"]["gpuHours"] == pytest.approx(3.0)
    day3 = run([usage("a", 3.5, created=created)], utc(2026, 3, 3, 12), day2.status, window=rolling)
    # Day 1 fell out; day 2's 2 h and today's 0.5 h remain.
    assert day3.status["used"]["gpuHours"] == pytest.approx(2.5)
    assert [r["start"] for r in day3.status["history"]] == ["2026-03-02T00:00:00Z"]
    # What the planner writes is what the CRD's status schema describes.
    BudgetStatus.model_validate(day3.status)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_the_soft_threshold_and_the_limit_each_warn_once_per_window() -> None:
    created = utc(2026, 3, 2)
    now = utc(2026, 3, 5)
    below = run([usage("a", 7.99, created=created)], now)
    assert condition(below.status, "SoftLimitReached")["status"] == "False"
    assert below.events == []
    soft = run([usage("a", 8.0, created=created)], now, below.status)
    assert condition(soft.status, "SoftLimitReached")["status"] == "True"
    assert condition(soft.status, "LimitReached")["status"] == "False"
    (warning,) = soft.events
    assert (warning.type, warning.reason) == ("Warning", "BudgetSoftLimit")
    assert "8 of 10 GPU-hours used" in warning.message
    assert run([usage("a", 9.0, created=created)], now, soft.status).events == []
    hard = run([usage("a", 10.0, created=created)], now, soft.status)
    assert [e.reason for e in hard.events] == ["BudgetExhausted"]
    assert "rolls over at 2026-04-01T00:00:00Z" in hard.events[0].message
    assert condition(hard.status, "LimitReached")["status"] == "True"
    assert hard.status["remaining"] == 0
    assert run([usage("a", 11.0, created=created)], now, hard.status).events == []
    # A new window starts below both again, and warns again when it gets there.
    april = run([usage("a", 11.0, created=created)], utc(2026, 4, 1, 0, 0, 1), hard.status)
    assert condition(april.status, "LimitReached")["status"] == "False"
    again = run([usage("a", 21.0, created=created)], utc(2026, 4, 2), april.status)
    assert [e.reason for e in again.events] == ["BudgetSoftLimit", "BudgetExhausted"]
    BudgetStatus.model_validate(again.status)


def test_a_money_limit_counts_cost_and_needs_prices() -> None:
    created = utc(2026, 3, 2)
    priced = run(
        [usage("a", 1.0, created=created, cost=30.0)], utc(2026, 3, 5), limit={"amount": 100}
    )
    assert priced.status["percentUsed"] == pytest.approx(30.0)
    assert priced.status["currency"] == "USD"
    assert condition(priced.status, "Ready")["status"] == "True"
    unpriced = run([usage("a", 1.0, created=created)], utc(2026, 3, 5), limit={"amount": 100})
    assert condition(unpriced.status, "Ready")["reason"] == "NoPrices"


def test_usage_is_read_from_the_metering_status_fields() -> None:
    obj = {
        "metadata": {
            "uid": "u1",
            "namespace": "ns",
            "name": "tj",
            "creationTimestamp": "2026-03-02T00:00:00Z",
        },
        "spec": {"team": "nlp"},
        "status": {
            "phase": "Succeeded",
            "usage": {"gpuHours": {"spot": 1.25, "onDemand": 0.5}, "cost": 3.5, "currency": "EUR"},
        },
    }
    read = workload_usage("TrainingJob", obj)
    assert read.usage == Amounts(1.75, 3.5)
    assert (read.team, read.finished, read.currency) == ("nlp", True, "EUR")
    assert workload_usage("InferenceService", {"metadata": {}}).usage == Amounts()


# -- the training gate ---------------------------------------------------------------------------

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)  # tests.unit.test_training_planner's


def budget(name: str, used: float, *, stale: bool = False, **changes: Any) -> dict[str, Any]:
    """A Budget covering namespace ns (the test TrainingJob's), as the index holds it."""
    return {
        "metadata": {"name": name},
        "spec": budget_spec(**{"namespaces": ["ns"], "teams": [], **changes}),
        "status": {
            "windowStart": "2025-12-01T00:00:00Z" if stale else "2026-01-01T00:00:00Z",
            "used": {"gpuHours": used, "amount": 0.0},
        },
    }


def check(*budgets: dict[str, Any], **fields: Any) -> training_planner.Hold | None:
    return gate.gate(lambda: budgets)(observe(spec(**fields)))


def test_an_exhausted_budget_holds_a_new_attempt_naming_it_and_its_rollover() -> None:
    hold = check(budget("team-a", 10.0))
    assert hold is not None
    assert (hold.reason, hold.spot_only, hold.retry_after) == ("BudgetExhausted", False, 15.0)
    assert hold.message == (
        "budget team-a is exhausted (limit 10 GPU-hours, 0 left); "
        "its window rolls over at 2026-02-01T00:00:00Z"
    )


def test_below_the_limit_a_raised_limit_a_new_window_or_another_namespace_hold_nothing() -> None:
    assert check(budget("team-a", 9.9)) is None
    assert check(budget("team-a", 10.0, limit={"gpuHours": 20})) is None
    assert check(budget("team-a", 10.0, stale=True)) is None
    other = budget("team-a", 10.0)
    other["spec"]["namespaces"] = ["elsewhere"]
    assert check(other) is None
    assert check(budget("by-team", 10.0, teams=["nlp"], namespaces=[]), team="nlp") is not None


def test_spot_only_lets_it_start_on_spot_and_block_wins_over_it() -> None:
    spot = check(budget("spot", 10.0, action="SpotOnly"))
    assert spot is not None
    assert (spot.reason, spot.spot_only) == ("BudgetSpotOnly", True)
    both = check(budget("spot", 10.0, action="SpotOnly"), budget("strict", 10.0))
    assert both is not None
    assert (both.reason, both.spot_only) == ("BudgetExhausted", False)


def test_the_held_job_waits_and_starts_when_the_limit_is_raised() -> None:
    spent = [budget("team-a", 10.0)]
    check_now = gate.gate(lambda: spent)
    obs = observe(spec())
    hold = check_now(obs)
    assert hold is not None
    held = training_planner.plan(dataclasses.replace(obs, holds=(hold,)), SPOT_PRESETS["karpenter"])
    assert held.create == []
    assert held.status["phase"] == "Waiting"
    assert "budget team-a is exhausted" in condition(held.status, "Ready")["message"]
    spent[0] = budget("team-a", 10.0, limit={"gpuHours": 50})
    again = observe(spec(), status=held.status)
    assert check_now(again) is None
    started = training_planner.plan(again, SPOT_PRESETS["karpenter"])
    assert [m["kind"] for m in started.create] == ["Job"]


def advise(*budgets: dict[str, Any], status: dict[str, Any] | None = None, **fields: Any) -> Any:
    return gate.fit_advisor(lambda: budgets)(observe(spec(**fields), status=status))


def test_an_estimate_that_cannot_fit_is_advised_against_but_not_held() -> None:
    # 2 workers x 1 GPU x 3 h = 6 GPU-hours against 4 left.
    big: dict[str, Any] = {"workers": 2, "activeDeadlineSeconds": 3 * 3600}
    advice = advise(budget("team-a", 6.0), **big)
    assert (advice.type, advice.ok, advice.reason) == ("BudgetFits", False, "EstimateExceedsBudget")
    assert "the estimate of 6 GPU-hours" in advice.message
    assert "the 4 left in budget team-a" in advice.message
    assert advise(budget("team-a", 3.0), **big).ok
    # What the job already used is in the budget's usage: only the rest of its estimate counts.
    own = {"usage": {"gpuHours": {"spot": 2.0, "onDemand": 0.5}}}
    assert advise(budget("team-a", 6.0), status=own, **big).ok
    assert advise(budget("team-a", 6.0), workers=2) is None  # no deadline, no estimate
    cleared = {"conditions": [{"type": "BudgetFits", "status": "False"}]}
    assert advise(status=cleared, **big).ok


def test_the_planner_sets_the_advice_as_a_condition_and_warns_once() -> None:
    advice = training_planner.Advice("BudgetFits", False, "EstimateExceedsBudget", "too big")
    obs = dataclasses.replace(observe(spec()), advice=(advice,))
    plan = training_planner.plan(obs, SPOT_PRESETS["karpenter"])
    assert [m["kind"] for m in plan.create] == ["Job"]
    fits = condition(plan.status, "BudgetFits")
    assert (fits["status"], fits["reason"], fits["message"]) == (
        "False",
        "EstimateExceedsBudget",
        "too big",
    )
    assert [e.reason for e in plan.events if e.type == "Warning"] == ["EstimateExceedsBudget"]
    running = dataclasses.replace(
        observe(spec(), status=plan.status, jobs=(job(1, ready=1),), pods=(pod(1),)),
        advice=(advice,),
    )
    assert [
        e.reason for e in training_planner.plan(running, SPOT_PRESETS["karpenter"]).events
    ] == []


def test_the_metrics_show_each_budgets_ratio_and_threshold() -> None:
    figures = metrics.BudgetFigures("team-a", "gpu_hours", 8.0, 10.0, 0.8)
    families = {f.name: f for f in metrics.BudgetCollector(lambda: [figures]).collect()}
    (ratio,) = families[metrics.BUDGET_USED_RATIO].samples
    assert (ratio.labels, ratio.value) == ({"budget": "team-a"}, 0.8)
    (soft,) = families[metrics.BUDGET_SOFT_THRESHOLD].samples
    assert soft.value == 0.8
    (limit,) = families[metrics.BUDGET_LIMIT].samples
    assert (limit.labels, limit.value) == ({"budget": "team-a", "unit": "gpu_hours"}, 10.0)


def test_a_money_budget_estimates_at_the_price_table() -> None:
    table = PriceTable("EUR", {"default": Price(spot=1.0, on_demand=3.0)})
    money = budget("money", 0.0, limit={"amount": 5})
    money["status"]["currency"] = "EUR"
    hour = {"activeDeadlineSeconds": 3600}
    advisor = gate.fit_advisor(lambda: [money], gate.priced(table))
    # On demand: 2 GPU-hours at 3 EUR do not fit in 5 EUR; all on spot at 1 EUR they do.
    on_demand = advisor(observe(spec(resources={"gpu": 2}, **hour)))
    assert on_demand is not None
    assert not on_demand.ok
    assert "the estimate of 6 EUR" in on_demand.message
    spot_job = spec(resources={"gpu": 2}, spot={"enabled": True}, **hour)
    fits = advisor(observe(spot_job))
    assert fits is not None
    assert fits.ok
    # Without prices a money limit cannot be estimated against: no advice at all.
    assert gate.fit_advisor(lambda: [money])(observe(spec(**hour))) is None
