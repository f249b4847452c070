"""The validator pod's commands: `run` (replay, then the shadow proxy until SIGTERM) and `relay`
(the report to the termination log); and the replay `stratus validate` runs from a laptop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pydantic import ValidationError

from stratus.api.common import duration_seconds
from stratus.api.validation import Comparator, Validation
from stratus.validation import client, replay
from stratus.validation.client import Endpoint
from stratus.validation.judge import Judge, settled
from stratus.validation.proxy import Copier, ShadowProxy, Upstreams
from stratus.validation.report import Report

log = logging.getLogger(__name__)

EXIT_BAD_CONFIG = 1
DEFAULT_ADMIN_PORT = 9901
ADMIN_REPORT_BYTES = 64 << 10
TICK_S = 0.2
# All interfaces: users reach the proxy, and the kubelet the admin port, from outside the pod.
ANY_HOST = "0.0.0.0"  # noqa: S104


class ConfigError(ValueError):
    """The pod's environment does not describe a validation; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    validation: Validation
    candidate: str
    stable: str
    requests: Path | None
    listen_port: int | None
    admin_port: int
    report: Path
    baseline: Endpoint | None  # an external baseline, with its credentials


def settings(env: Mapping[str, str]) -> Settings:
    """The run's settings from the environment; ConfigError names what is wrong."""
    try:
        validation = Validation.model_validate_json(env.get("STRATUS_VALIDATION", ""))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the document"
        raise ConfigError(f"STRATUS_VALIDATION: {where}: {first['msg']}") from None

    def port(name: str, default: int | None = None) -> int | None:
        text = env.get(name, "")
        if not text:
            return default
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise ConfigError(f"{name}: {text!r} is not a port")
        return int(text)

    def url(name: str) -> str:
        text = env.get(name, "").rstrip("/")
        try:
            Endpoint(text)
        except ValueError:
            raise ConfigError(f"{name}: not an http:// or https:// base URL") from None
        return text

    candidate = url("STRATUS_CANDIDATE_URL")
    stable = url("STRATUS_STABLE_URL")
    requests = None
    if validation.replay is not None:
        if not env.get("STRATUS_REQUESTS"):
            raise ConfigError("STRATUS_REQUESTS: the request set's path is required with replay")
        requests = Path(env["STRATUS_REQUESTS"])
    listen_port = port("STRATUS_LISTEN_PORT")
    if validation.shadow is not None and listen_port is None:
        raise ConfigError("STRATUS_LISTEN_PORT: required with shadow")
    admin_port = port("STRATUS_ADMIN_PORT", DEFAULT_ADMIN_PORT)
    assert admin_port is not None
    external = validation.baseline.url
    return Settings(
        validation=validation,
        candidate=candidate,
        stable=stable,
        requests=requests,
        listen_port=listen_port,
        admin_port=admin_port,
        report=Path(env.get("STRATUS_REPORT") or "report.json"),
        baseline=client.baseline_endpoint(external, env) if external else None,
    )


def write_report(path: Path, report: Report) -> None:
    """Atomically: the relay copies the file as soon as it appears."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(report.to_json())
    partial.replace(path)
    log.info("report written: %s: %s", report.verdict, report.reason)


class Admin:
    """/ready: 200 only while the proxy serves; /report: the figures so far; /healthz."""

    def __init__(self, port: int, host: str = ANY_HOST) -> None:
        self.ready = False
        self.report = Report()
        admin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/ready":
                    status, body = (200, b"ready\n") if admin.ready else (503, b"not ready\n")
                elif path == "/healthz":
                    status, body = 200, b"ok\n"
                elif path == "/report":
                    status, body = 200, admin.report.to_json(ADMIN_REPORT_BYTES).encode()
                else:
                    status, body = 404, b"not found\n"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                """Probes every few seconds: not logged."""

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run(env: Mapping[str, str], stop: threading.Event, *, host: str = ANY_HOST) -> int:
    """Replay (not ready), then shadow (ready) until `stop`; the report written once decided.
    A bad configuration or request set: a Failed report naming it, exit 1."""
    started = time.monotonic()
    report_path = Path(env.get("STRATUS_REPORT") or "report.json")
    try:
        cfg = settings(env)
    except ConfigError as exc:
        write_report(report_path, Report(failure=f"bad configuration: {exc}"))
        return EXIT_BAD_CONFIG
    validation = cfg.validation
    deadline = started + (duration_seconds(validation.timeout) or float("inf"))
    try:
        admin = Admin(cfg.admin_port, host)
    except OSError as exc:
        write_report(cfg.report, Report(failure=f"admin port {cfg.admin_port}: {exc.strerror}"))
        return EXIT_BAD_CONFIG
    try:
        try:
            report = _replay(cfg, deadline, stop) if validation.replay else Report()
        except replay.RequestSetError as exc:
            write_report(cfg.report, Report(failure=f"request set: {exc}"))
            return EXIT_BAD_CONFIG
        if report.verdict == "Failed" or validation.shadow is None:
            write_report(cfg.report, report)
            return 0
        return _shadow(cfg, report, admin, stop, deadline, host)
    finally:
        admin.close()


def _replay(cfg: Settings, deadline: float, stop: threading.Event) -> Report:
    validation = cfg.validation
    assert validation.replay is not None
    assert cfg.requests is not None
    requests = replay.load(cfg.requests, validation.replay.limit)
    path = validation.replay.path
    result, examples = replay.replay(
        requests,
        validation.comparators,
        candidate=Endpoint(cfg.candidate + path),
        baseline=cfg.baseline or Endpoint(cfg.stable + path),
        min_agreement=validation.min_agreement,
        noise_floor=validation.noise_floor,
        deadline=deadline,
        stop=stop,
    )
    report = Report(sources=[result], examples=examples)
    if result.requests < len(requests):
        why = "stopped" if stop.is_set() else f"timeout {validation.timeout}"
        report.failure = f"{why}: replayed {result.requests} of {len(requests)} requests"
    return report


def _shadow(
    cfg: Settings, done: Report, admin: Admin, stop: threading.Event, deadline: float, host: str
) -> int:
    validation = cfg.validation
    assert validation.shadow is not None
    assert cfg.listen_port is not None
    samples = validation.shadow.samples
    judge = Judge("shadow", validation.comparators, validation.min_agreement)
    upstreams = Upstreams(cfg.stable, cfg.candidate, cfg.baseline, validation.noise_floor)
    judged = threading.Event()
    copier = Copier(upstreams, judge, judged=judged.set)
    try:
        proxy = ShadowProxy((host, cfg.listen_port), upstreams, copier, validation.shadow.percent)
    except OSError as exc:
        copier.stop()
        write_report(cfg.report, Report(failure=f"port {cfg.listen_port}: {exc.strerror}"))
        return EXIT_BAD_CONFIG
    serving = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": TICK_S})
    serving.start()
    admin.ready = True
    log.info("shadow proxy on port %d in front of the stable revision", cfg.listen_port)

    def report(*, final: bool = False) -> Report:
        return Report(
            sources=[*done.sources, judge.result(samples, final=final)],
            examples=done.examples + judge.examples_now(),
            overhead_ms=proxy.overhead.percentiles_ms(),
        )

    written = False
    while not stop.is_set():
        current = report()
        admin.report = current
        if not written and settled(current.sources[-1].decisions):
            write_report(cfg.report, current)
            written = True
        elif not written and time.monotonic() >= deadline:
            final = report(final=True)
            final.failure = f"timeout {validation.timeout}: {final.reason}"
            write_report(cfg.report, final)
            written = True
        judged.wait(TICK_S)
        judged.clear()
    admin.ready = False
    log.info("stopping: draining the shadow proxy")
    proxy.drain()
    serving.join()
    if not written:
        write_report(cfg.report, report(final=True))
    return 0


def relay(report: Path, to: Path, *, poll_s: float = 1.0, timeout_s: float | None = None) -> int:
    """Waits for the report and copies it to `to` (the termination log); 1 past the timeout."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not report.is_file():
        if deadline is not None and time.monotonic() >= deadline:
            log.error("no report at %s after %ss", report, timeout_s)
            return 1
        time.sleep(poll_s)
    data = report.read_bytes()
    to.write_bytes(data)
    log.info("relayed the report (%d bytes) to %s", len(data), to)
    return 0


def check(
    comparators: Sequence[Comparator],
    *,
    baseline: Endpoint,
    candidate: Endpoint,
    requests: Path,
    min_agreement: float,
    noise_floor: bool,
    limit: int = 1_000_000,
) -> Report:
    """A replay from here (`stratus validate`): RequestSetError for a bad request set."""
    result, examples = replay.replay(
        replay.load(requests, limit),
        comparators,
        candidate=candidate,
        baseline=baseline,
        min_agreement=min_agreement,
        noise_floor=noise_floor,
    )
    return Report(sources=[result], examples=examples)
