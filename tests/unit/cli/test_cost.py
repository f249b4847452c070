"""`stratus cost`: spend per team, cost center or workload from the resources' status.usage,
as a table or JSON, and from the operator's counters in Prometheus over a window."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from stratus import cli
from stratus.cli import cost
from tests.unit.cli.test_commands import FakeCluster

Obj = dict[str, Any]


def usage(spot: float, on_demand: float, priced: bool = True) -> Obj:
    block: Obj = {"gpuHours": {"spot": spot, "onDemand": on_demand}}
    if priced:
        cost_ = spot * 1.0 + on_demand * 3.0
        block |= {
            "cost": cost_,
            "onDemandCost": (spot + on_demand) * 3.0,
            "savings": (spot + on_demand) * 3.0 - cost_,
            "currency": "USD",
        }
    return block


def resource(kind: str, name: str, team: str | None, block: Obj | None, cc: str = "") -> Obj:
    spec: Obj = {"image": "x"}
    if team:
        spec["team"] = team
    if cc:
        spec["costCenter"] = cc
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": "ml"},
        "spec": spec,
        "status": {"usage": block} if block else {},
    }


OBJECTS = {
    ("trainingjobs", "bert"): resource("TrainingJob", "bert", "nlp", usage(10, 2), "cc-1"),
    ("trainingjobs", "gpt"): resource("TrainingJob", "gpt", "nlp", usage(0, 4), "cc-2"),
    ("trainingjobs", "new"): resource("TrainingJob", "new", "vision", None),
    ("inferenceservices", "web"): resource("InferenceService", "web", None, usage(0, 1)),
}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    cluster = FakeCluster(dict(OBJECTS))
    monkeypatch.setattr(cost, "connect", lambda args: cluster)
    return cluster


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_by_team_sums_each_teams_workloads_biggest_spend_first(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "cost")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "TEAM", "WORKLOADS", "SPOT", "GPU-H", "ON-DEMAND", "GPU-H", "COST", "(USD)", "SAVINGS",
    ]  # fmt: skip
    # nlp: 10 spot + 6 on-demand hours, 10 + 18 = 28; its savings 48 - 28 = 20.
    assert lines[1].split() == ["nlp", "2", "10.00", "6.00", "28.00", "20.00"]
    assert lines[2].split() == ["-", "1", "0.00", "1.00", "3.00", "0.00"]
    # A workload that has not run yet counts, with nothing used and no price.
    assert lines[3].split() == ["vision", "1", "0.00", "0.00", "-", "-"]
    assert lines[4].split() == ["TOTAL", "4", "10.00", "7.00", "31.00", "20.00"]
    assert "since each resource was created" in lines[5]


def test_by_workload_with_all_namespaces_names_each_resource(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run(capsys, "cost", "--by", "workload", "-A")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["NAMESPACE", "WORKLOAD", "TEAM"]
    assert lines[1].split() == ["ml", "tj/bert", "nlp", "10.00", "2.00", "16.00", "20.00"]
    assert [line.split()[1] for line in lines[2:5]] == ["tj/gpt", "infs/web", "tj/new"]


def test_json_by_cost_center_is_for_scripts(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run(capsys, "cost", "--by", "cost-center", "-o", "json")
    data = json.loads(out)
    assert (data["by"], data["source"], data["window"], data["currency"]) == (
        "cost-center", "status", "lifetime", "USD",
    )  # fmt: skip
    assert data["items"][0] == {
        "costCenter": "cc-1",
        "workloads": 1,
        "gpuHours": {"spot": 10.0, "onDemand": 2.0},
        "cost": 16.0,
        "onDemandCost": 36.0,
        "savings": 20.0,
    }
    assert data["total"]["gpuHours"] == {"spot": 10.0, "onDemand": 7.0}
    assert data["total"]["cost"] == 31.0


def test_without_a_price_table_only_hours_are_shown() -> None:
    rows = cost.from_status(
        [("TrainingJob", resource("TrainingJob", "a", "nlp", usage(1, 2, priced=False)))], "team"
    )
    text = cost.table(rows, "team", False, None)
    assert text.splitlines()[0].split()[-2:] == ["COST", "SAVINGS"]
    assert text.splitlines()[1].split() == ["nlp", "1", "1.00", "2.00", "-", "-"]
    assert "currency" not in cost.as_json(rows, "team", None)


def test_from_prometheus_the_window_sums_the_counters_by_team(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asked: list[str] = []
    series = {
        "gpu_seconds": [
            ({"team": "nlp", "capacity_type": "spot"}, 5.0 * 3600),
            ({"team": "nlp", "capacity_type": "on-demand"}, 1.0 * 3600),
            ({"team": "other", "capacity_type": "on-demand"}, 2.0 * 3600),
        ],
        "cost": [
            ({"team": "nlp", "capacity_type": "spot"}, 5.0),
            ({"team": "nlp", "capacity_type": "on-demand"}, 3.0),
            ({"team": "other", "capacity_type": "on-demand"}, 6.0),
        ],
    }

    def query(url: str, promql: str) -> list[tuple[dict[str, str], float]]:
        asked.append(promql)
        return series["gpu_seconds" if "gpu_seconds" in promql else "cost"]

    monkeypatch.setattr(cost, "query", query)
    code, out, _ = run(capsys, "cost", "--prometheus", "http://prom:9090", "--window", "7d")
    assert code == 0
    assert asked == [
        "sum by (team, capacity_type) (increase(stratus_gpu_seconds_total[7d]))",
        "sum by (team, capacity_type) (increase(stratus_cost_total[7d]))",
    ]
    lines = out.splitlines()
    assert lines[0].split()[0] == "TEAM"
    assert "WORKLOADS" not in lines[0]
    assert lines[1].split() == ["nlp", "5.00", "1.00", "8.00", "-"]
    assert lines[2].split() == ["other", "0.00", "2.00", "6.00", "-"]
    assert "over the last 7d" in out


def test_from_prometheus_a_window_per_workload_is_each_series_latest_less_earliest(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Per workload, the series are each workload's cumulative status.usage: the window's
    spend is the latest value less the earliest. A name made again (another uid) adds up."""
    asked: list[str] = []
    tj = {"namespace": "ml", "kind": "TrainingJob", "name": "bert", "team": "nlp"}
    series = {
        "gpu_seconds": [
            ({**tj, "uid": "u1", "capacity_type": "spot"}, 2.0 * 3600),
            ({**tj, "uid": "u2", "capacity_type": "spot"}, 1.0 * 3600),
            ({**tj, "uid": "u2", "capacity_type": "on-demand"}, 0.5 * 3600),
        ],
        "cost": [({**tj, "uid": "u1"}, 2.0), ({**tj, "uid": "u2"}, 2.5)],
    }

    def query(url: str, promql: str) -> list[tuple[dict[str, str], float]]:
        asked.append(promql)
        return series["gpu_seconds" if "gpu_seconds" in promql else "cost"]

    monkeypatch.setattr(cost, "query", query)
    argv = ("cost", "--prometheus", "http://prom:9090", "--window", "1h", "--by", "workload")
    code, out, _ = run(capsys, *argv, "-n", "ml", "-o", "json")
    assert code == 0
    selector = 'stratus_workload_gpu_seconds{namespace="ml"}'
    labels = "namespace, kind, name, uid, team, capacity_type"
    assert asked[0] == (
        f"max by ({labels}) (max_over_time({selector}[1h])) - "
        f"min by ({labels}) (min_over_time({selector}[1h]))"
    )
    assert "capacity_type" not in asked[1]
    assert json.loads(out)["items"] == [
        {
            "namespace": "ml",
            "kind": "TrainingJob",
            "name": "bert",
            "team": "nlp",
            "gpuHours": {"spot": 3.0, "onDemand": 0.5},
            "cost": 4.5,
        }
    ]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert "namespace=" not in asked[-1]
    assert out.splitlines()[1].split() == ["ml", "tj/bert", "nlp", "3.00", "0.50", "4.50", "-"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--prometheus", "http://p", "-n", "ml"], "-n applies to --by workload"),
        (["--prometheus", "http://p", "--by", "workload", "-n", 'a"}'], "not a namespace name"),
        (["--prometheus", "http://p", "--window", "a week"], "a duration such as 7d"),
        (["--prometheus", "file:///etc/passwd"], "an http(s) address"),
        (["--window", "7d"], "--window needs --prometheus"),
    ],
)
def test_bad_combinations_are_one_line(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    code, _, err = run(capsys, "cost", *argv)
    assert code == 1
    assert says in err
    assert len(err.splitlines()) == 1


def test_the_command_is_wired_with_its_flags() -> None:
    parser = cli.app.build_parser()
    args = parser.parse_args(["cost", "-A", "--by", "workload", "-o", "yaml"])
    assert isinstance(args, argparse.Namespace)
    assert (args.all_namespaces, args.by, args.output, args.func) == (
        True, "workload", "yaml", cost.cmd_cost,
    )  # fmt: skip
