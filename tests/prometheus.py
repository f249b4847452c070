"""A real Prometheus server for the analysis tests, scraping an exporter on loopback whose
values the test sets, or real model servers that the test lists in a file as their pods come and
go: the operator's PromQL is evaluated by Prometheus itself."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import wait_for

REQUESTS = "http_requests_total"
LATENCY = "http_request_duration_seconds"
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
RATE = 50.0  # requests per second each revision serves
# The queries an InferenceService's analysis runs, as a user would write them. Each revision's
# rates are constant, so the window can be long: a busy machine may miss a dozen scrapes before
# a result comes back empty (inconclusive, which pauses the tests' rollouts).
ERROR_RATE = (
    f'sum(rate({REQUESTS}{{revision="{{{{canary}}}}",code=~"5.."}}[15s])) / '
    f'sum(rate({REQUESTS}{{revision="{{{{canary}}}}"}}[15s]))'
)
P99_LATENCY = (
    f"histogram_quantile(0.99, sum by (le) (rate({LATENCY}_bucket"
    f'{{revision="{{{{canary}}}}"}}[15s])))'
)


@dataclass
class Behaviour:
    error_rate: float
    latency: float
    since: float


class Exporter:
    """A model server's metrics as Prometheus would scrape them: per-revision request counters
    (by status code) and latency histograms, growing at RATE requests a second with the error
    rate and latency the test sets."""

    def __init__(self) -> None:
        self.revisions: dict[str, Behaviour] = {}
        self.gauges: dict[str, float] = {}
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set(self, revision: str, error_rate: float = 0.0, latency: float = 0.08) -> None:
        self.revisions[revision] = Behaviour(error_rate, latency, time.monotonic())

    def gauge(self, name: str, labels: dict[str, str], value: float | None) -> None:
        """A gauge series the test sets, such as the DCGM exporter's; None removes it."""
        series = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        if value is None:
            self.gauges.pop(series, None)
        else:
            self.gauges[series] = value

    def exposition(self) -> str:
        lines = [f"# TYPE {REQUESTS} counter", f"# TYPE {LATENCY} histogram"]
        for revision, how in sorted(self.revisions.items()):
            total = RATE * (time.monotonic() - how.since)
            failed = total * how.error_rate
            lines.append(f'{REQUESTS}{{revision="{revision}",code="500"}} {failed}')
            lines.append(f'{REQUESTS}{{revision="{revision}",code="200"}} {total - failed}')
            for bound in BUCKETS:
                inside = total if how.latency <= bound else 0.0
                lines.append(f'{LATENCY}_bucket{{revision="{revision}",le="{bound}"}} {inside}')
            lines.append(f'{LATENCY}_bucket{{revision="{revision}",le="+Inf"}} {total}')
            lines.append(f'{LATENCY}_sum{{revision="{revision}"}} {total * how.latency}')
            lines.append(f'{LATENCY}_count{{revision="{revision}"}} {total}')
        lines += [f"{series} {value}" for series, value in sorted(dict(self.gauges).items())]
        return "\n".join(lines) + "\n"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()


def write_targets(path: Path, targets: Iterable[tuple[str, dict[str, str]]]) -> None:
    """Replace a file_sd file with `targets` (address, labels) at once: written beside it and
    renamed, so Prometheus never reads half a file."""
    groups = [{"targets": [address], "labels": labels} for address, labels in targets]
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(groups))
    os.replace(partial, path)


class Prometheus:
    """Scrapes `target` every second as job "test"; with `file_sd`, also the targets that file
    lists (see write_targets) as job "pods"."""

    def __init__(
        self, workdir: Path, target: str | None, port: int, file_sd: Path | None = None
    ) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed: run hack/install-deps.sh (make deps)"
        self.file_sd = file_sd
        jobs: list[dict[str, Any]] = []
        if target:
            jobs.append({"job_name": "test", "static_configs": [{"targets": [target]}]})
        if file_sd:
            if not file_sd.exists():
                write_targets(file_sd, [])
            jobs.append(
                {
                    "job_name": "pods",
                    "file_sd_configs": [{"files": [str(file_sd)], "refresh_interval": "1s"}],
                }
            )
        config = workdir / "prometheus.yml"
        # JSON is YAML.
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": jobs,
                }
            )
        )
        self.url = f"http://127.0.0.1:{port}"
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for("Prometheus ready", self._ready, timeout=60)
        if target:
            # Target discovery takes a few seconds; the tests start once the exporter is scraped.
            wait_for("the exporter scraped", lambda: self.query('up{job="test"} == 1'), timeout=60)

    def query(self, promql: str) -> list[Any]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as resp:
            result: list[Any] = json.load(resp)["data"]["result"]
            return result

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
