"""A real Prometheus server for the analysis tests, scraping an exporter on loopback whose
values the test sets: the operator's PromQL is evaluated by Prometheus itself."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.support import wait_for

METRIC = "stratus_test_error_ratio"


class Exporter:
    """Serves `stratus_test_error_ratio{revision=...}` with the values in `values`."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                lines = [f"# TYPE {METRIC} gauge"] + [
                    f'{METRIC}{{revision="{rev}"}} {value}'
                    for rev, value in sorted(exporter.values.items())
                ]
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()


class Prometheus:
    def __init__(self, workdir: Path, target: str, port: int) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed: run hack/install-deps.sh (make deps)"
        config = workdir / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: test\n    static_configs: [{{targets: ['{target}']}}]\n"
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
