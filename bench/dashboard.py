"""The dashboard's list page with many resources, from a dashboard serving an in-memory API (no
cluster: it measures the dashboard, not the API server), two ways: the page, its script and
style, and the list of every resource, fetched the way a browser does (three at once after the
page); and the page loaded in headless Chromium, from navigation start to the list rendered
(the page's `stratus-loaded` performance mark).

`python -m bench.dashboard [--resources N] [--samples N]` runs it alone and prints the figure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.benchmarks import quantiles
from bench.browser import chromium
from stratus.api.common import API_VERSION
from stratus.dashboard.live import Live
from stratus.dashboard.memory import MemorySource
from stratus.dashboard.server import Dashboard, make_server

ASSETS = ("/static/app.js", "/static/app.css", "/api/resources")


def populate(source: MemorySource, count: int) -> None:
    """Half TrainingJobs, half InferenceServices, across ten namespaces, with full statuses."""
    for index in range(count):
        namespace = f"team-{index % 10}"
        if index % 2:
            source.put(
                {
                    "apiVersion": API_VERSION,
                    "kind": "TrainingJob",
                    "metadata": {"name": f"train-{index}", "namespace": namespace},
                    "spec": {"image": "train:1", "team": f"team-{index % 10}"},
                    "status": {
                        "phase": "Running",
                        "attempt": 2,
                        "preemptions": 1,
                        "gpuSeconds": 3600 * index,
                        "message": "attempt 2 is running",
                        "lastCheckpoint": {"path": f"/c/step-{index}", "step": index},
                    },
                }
            )
        else:
            source.put(
                {
                    "apiVersion": API_VERSION,
                    "kind": "InferenceService",
                    "metadata": {"name": f"serve-{index}", "namespace": namespace},
                    "spec": {"image": "serve:2", "model": {"uri": "https://m.example/m"}},
                    "status": {
                        "phase": "Progressing",
                        "stableRevision": "aaa",
                        "canaryRevision": "bbb",
                        "canaryWeight": 50,
                        "canaryWeightAchieved": 50,
                        "message": "canary bbb at 50%",
                    },
                }
            )


def _get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": f"127.0.0.1:{port}"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status}")
        return body
    finally:
        conn.close()


def browser_loads(port: int, resources: int, samples: int) -> list[float]:
    """Seconds from navigation start to the list rendered with every resource, per load of the
    page in a fresh tab state (each load a new navigation; the browser's cache kept, as a
    person reloading would)."""
    browser = chromium()
    try:
        times = []
        for _ in range(samples + 1):
            browser.get(f"http://127.0.0.1:{port}/?sample={time.monotonic_ns()}")
            mark = None
            deadline = time.monotonic() + 30
            while mark is None and time.monotonic() < deadline:
                mark = browser.execute_script(
                    "const m = performance.getEntriesByName('stratus-loaded');"
                    "return m.length ? m[0].startTime : null;"
                )
                if mark is None:
                    time.sleep(0.01)
            rows = browser.execute_script(
                "return document.querySelectorAll('#resources tbody tr[data-name]').length"
            )
            if mark is None or rows != resources:
                raise RuntimeError(f"the page rendered {rows} of {resources} resources")
            times.append(float(mark) / 1000)
        return times[1:]  # the first load fills the cache
    finally:
        browser.quit()


def dashboard_load(resources: int, samples: int) -> dict[str, Any]:
    source = MemorySource()
    populate(source, resources)
    live = Live(source, None, watch_timeout=5)
    server = make_server(Dashboard(live), "127.0.0.1", 0)
    port = server.server_address[1]
    live.start()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        if not live.wait_synced(30):
            raise RuntimeError("the dashboard's cache did not fill")
        listed = json.loads(_get(port, "/api/resources"))["items"]
        if len(listed) != resources:
            raise RuntimeError(f"listed {len(listed)} of {resources} resources")
        times, sizes = [], 0
        with ThreadPoolExecutor(len(ASSETS)) as pool:
            for _ in range(samples):
                started = time.perf_counter()
                sizes = len(_get(port, "/"))
                sizes += sum(len(body) for body in pool.map(lambda p: _get(port, p), ASSETS))
                times.append(time.perf_counter() - started)
        load = quantiles(times)
        rendered = quantiles(browser_loads(port, resources, max(3, samples // 10)))
        return {
            "resources": resources,
            "page_load_seconds": load,
            "page_load_p95_ms": round(load["p95"] * 1000, 1),
            "browser_load_seconds": rendered,
            "browser_load_p95_ms": round(rendered["p95"] * 1000, 1),
            "bytes": sizes,
        }
    finally:
        live.stop()
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard")
    parser.add_argument("--resources", type=int, default=500)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    result = dashboard_load(args.resources, args.samples)
    print(json.dumps(result))
    print(
        f"dashboard page load p95 with {args.resources} resources: {result['page_load_p95_ms']} ms"
        f" fetched, {result['browser_load_p95_ms']} ms rendered in Chromium"
    )


if __name__ == "__main__":
    main()
