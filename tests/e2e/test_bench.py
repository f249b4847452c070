"""Every benchmark once, at a tiny size, so `make bench` keeps working. Figures are reported,
never asserted: speed and size targets are judged by `make bench`, not by the test suite."""

from __future__ import annotations

import json
from pathlib import Path

from bench.__main__ import run


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
        "rollout_step_latency",
        "footprint",
        "peer_training_operator",
    }
    assert results["throughput"]["create_to_job_seconds"]["n"] == 10
    assert results["api_economy"]["trainingjob"]["requests"]
    assert results["preemption_recovery"]["stratus_reclaim_to_next_attempt_scheduled"]["n"] == 2
    assert results["rollout_step_latency"]["pause_end_to_next_weight_seconds"]["n"] == 3
    assert results["footprint"]["resident_mib"] > 0
    peer = results["peer_training_operator"]
    assert peer["measured"] is True
    for variant in ("as_shipped", "controller_threads_16"):
        assert peer[variant]["create_to_pod_seconds"]["n"] == 10
