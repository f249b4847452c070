"""`python -m bench [--size tiny|full]`: every benchmark in one world, results to bench/results."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import benchmarks, checkpoint, dashboard, peer, real_node
from bench.harness import choose_real_node, world
from stratus.devcluster.nodepools import NodePool

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "throughput": 10,
        "preemptions": 2,
        "services": 1,
        "scale_tjs": 20,
        "scale_infs": 4,
        "nodes": 4,
        "idle": 3.0,
        "real_node_samples": 2,
        "checkpoint_bytes": 32 << 20,
        "checkpoint_samples": 2,
        "dashboard_resources": 500,
        "dashboard_samples": 20,
    },
    "full": {
        "throughput": 500,
        "preemptions": 20,
        "services": 3,
        "scale_tjs": 2000,
        "scale_infs": 200,
        "nodes": 200,
        "idle": 30.0,
        "real_node_samples": 10,
        "checkpoint_bytes": 1 << 30,
        "checkpoint_samples": 4,
        "dashboard_resources": 500,
        "dashboard_samples": 200,
    },
}


def machine() -> dict[str, Any]:
    memory = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(memory / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def run(size: str, out: Path) -> dict[str, Any]:
    s = SIZES[size]
    pools = (
        NodePool(name="gpu-spot", count=4, gpus=8, capacity_type="spot"),
        NodePool(name="cpu", count=s["nodes"], cpu="64", memory="256Gi"),
    )
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "size": size,
        "machine": machine(),
        "results": {},
    }
    node, no_node = choose_real_node()
    with (
        tempfile.TemporaryDirectory(prefix="stratus-bench-") as tmp,
        world(Path(tmp), pools, node, no_node) as w,
    ):
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "throughput": lambda: benchmarks.throughput(w, s["throughput"]),
            "peer_training_operator": lambda: peer.training_operator(
                w, s["throughput"], report["results"]["throughput"]
            ),
            "api_economy": lambda: benchmarks.api_economy(w),
            "preemption_recovery": lambda: benchmarks.preemption_recovery(w, s["preemptions"]),
            "real_node": lambda: real_node.real_node(w, s["real_node_samples"]),
            "rollout_step_latency": lambda: benchmarks.rollout_step_latency(w, s["services"]),
            "footprint": lambda: benchmarks.footprint(
                w, s["scale_tjs"], s["scale_infs"], s["idle"]
            ),
            # Needs no cluster: a SeaweedFS of its own, on loopback.
            "checkpoint_storage": lambda: checkpoint.checkpoint_storage(
                Path(tmp), s["checkpoint_bytes"], s["checkpoint_samples"]
            ),
            # Needs no cluster either: the dashboard serving an in-memory API.
            "dashboard_load": lambda: dashboard.dashboard_load(
                s["dashboard_resources"], s["dashboard_samples"]
            ),
        }
        for name, step in steps.items():
            started = time.monotonic()
            print(f"[bench] {name} ...", flush=True)
            report["results"][name] = step()
            print(
                f"[bench] {name}: {json.dumps(report['results'][name])} "
                f"({time.monotonic() - started:.0f}s)",
                flush=True,
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{size}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = parser.parse_args()
    # Stopped by a signal, the benchmark still tears its cluster and processes down (a shell
    # that starts it in the background has it ignore SIGINT otherwise).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run(args.size, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
