"""Every benchmark once, at a tiny size, so `make bench` keeps working. Figures are reported,
never asserted: speed and size targets are judged by `make bench`, not by the test suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench import real_node
from bench.__main__ import SIZES, run

from stratus.devcluster import realnode


# Its world starts a real node of its own, and only one runs on a machine at a time: it runs
# before the session's cluster (which has its own) starts.
@pytest.mark.before_cluster
def test_every_benchmark_runs_and_writes_its_report(tmp_path: Path) -> None:
    report = run("tiny", tmp_path)
    written = json.loads((tmp_path / "tiny.json").read_text())
    assert written == report
    assert written["machine"]["cpus"] >= 1
    results = written["results"]
    assert set(results) == {
        "throughput",
        "api_economy",
        "preemption_recovery",
        "real_node",
        "rollout_step_latency",
        "footprint",
        "peer_training_operator",
        "checkpoint_storage",
        "dashboard_load",
    }
    throughput = results["throughput"]
    assert throughput["create_to_job_seconds"]["n"] == 10
    assert throughput["ratio_vs_direct_jobs"] == throughput["ratio"]
    for key in ("ratio_vs_write_floor", "write_floor_seconds"):
        assert throughput[key] > 0
    assert len(throughput["write_floor_runs_seconds"]) == 2
    assert results["api_economy"]["trainingjob"]["requests"]
    assert results["preemption_recovery"]["stratus_reclaim_to_next_attempt_scheduled"]["n"] == 2
    assert results["rollout_step_latency"]["pause_end_to_next_weight_seconds"]["n"] == 3
    assert results["footprint"]["resident_mib"] > 0
    assert results["footprint"]["idle_writes"] >= 0
    stored = results["checkpoint_storage"]
    assert stored["size_mib"] == 32
    assert len(stored["seconds"]["sdk_upload"]) == 2
    assert stored["upload_ratio"] > 0
    assert stored["resume_ratio"] > 0
    dashboard = results["dashboard_load"]
    assert dashboard["resources"] == 500
    assert dashboard["page_load_seconds"]["n"] == SIZES["tiny"]["dashboard_samples"]
    assert dashboard["page_load_p95_ms"] > 0
    assert dashboard["browser_load_seconds"]["n"] == 3
    assert dashboard["browser_load_p95_ms"] > 0
    peer = results["peer_training_operator"]
    assert peer["measured"] is True
    for variant in ("as_shipped", "controller_threads_16"):
        assert peer[variant]["create_to_pod_seconds"]["n"] == 10
    real = results["real_node"]
    assert real["measured"] is (realnode.unavailable() is None), real.get("reason")
    if real["measured"]:
        samples = SIZES["tiny"]["real_node_samples"]
        for measure in real_node.MEASURES:
            for side in ("stratus", "plain_job"):
                assert real[measure][side]["n"] == samples, (measure, side)
            assert real[measure]["ratio_p50"] > 0
