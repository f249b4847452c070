"""A small model server for InferenceService examples and tests: a real classifier over HTTP.

Standard library HTTP (ThreadingHTTPServer) and prometheus_client, nothing else at run time:

    POST /predict  {"instances": [[f1, f2, f3, f4], ...]}
                   -> 200 {"predictions": [label, ...], "scores": [[s1, s2, s3], ...],
                           "revision": REVISION}
    GET  /healthz  -> 200 ok
    GET  /metrics  -> Prometheus text format, over /predict requests:
                      model_requests_total{code}            every answer, by HTTP status code
                      model_request_errors_total            answers with a 5xx code
                      model_request_duration_seconds        a histogram of the time to answer
    GET  /         -> the model's classes, where it came from, the revision

Every answer carries the header `X-Revision: REVISION` (the environment variable REVISION, else
STRATUS_REVISION, which Stratus sets to the revision's hash; "unknown" when neither is set), so a
load generator can count which revision answered.

The model
---------
The built-in model (`model.json` beside this file) is a scikit-learn LogisticRegression
trained on the iris data set when the image is built (train_model.py), which checks that the
prediction below agrees with scikit-learn's on every sample. When `$STRATUS_MODEL_DIR` (where
the operator stages the model) holds a `model.json`, directly or in exactly one subfolder, that
model is served instead. A model.json that does not parse stops the server with a message.

model.json, format "stratus.dev/linear-classifier/v1", is plain JSON that any language can
write or check:

    {"format": "stratus.dev/linear-classifier/v1",
     "classes": ["setosa", "versicolor", "virginica"],   # labels: strings or numbers
     "coef": [[w11, w12, w13, w14], [...], [...]],       # one row per class, one weight a feature
     "intercept": [b1, b2, b3],                          # one per row
     "features": ["sepal length (cm)", ...]}             # optional: the features' names

The prediction for an instance x is classes[k] for the k that maximizes coef[k]·x + intercept[k]
(the first on a tie). With two classes and a single row (scikit-learn's binary form) it is
classes[1] when coef[0]·x + intercept[0] > 0, else classes[0].

A bad revision on purpose
-------------------------
FAIL_RATIO (a number from 0 to 1, "0.25" or "1/4"; default 0; the image's build argument of the
same name sets the default) makes exactly that share of /predict requests answer 500: the n-th
request fails when floor(n·r) > floor((n-1)·r), so the first n requests hold floor(n·r)
failures, spread evenly (0.1: every tenth).

A model that answers differently, on purpose (for prediction validation)
-----------------------------------------------------------------------
FLIP_RATIO (the same form and spread as FAIL_RATIO; default 0) replaces that share of the
instances' labels by the next class (the last by the first). SCORE_NOISE (a standard deviation,
default 0) adds Gaussian noise to every score before the label is chosen, so an instance near a
decision boundary may get either label: a nondeterministic model.

SIGTERM or SIGINT stops it gracefully: no new connections, in-flight requests finish, exit 0.

    python3 server.py [serve]             # on $HOST:$PORT (all interfaces, 8080)
    python3 server.py export-model PATH   # write the built-in model as model.json ("-": stdout)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

FORMAT = "stratus.dev/linear-classifier/v1"
MODEL_FILE = "model.json"
BUILTIN_MODEL = Path(__file__).resolve().with_name(MODEL_FILE)
MAX_BODY_BYTES = 1 << 20

Label = str | int | float


class ModelError(ValueError):
    """A model.json that cannot be served; the message names what is wrong."""


class BadInstances(ValueError):
    """A /predict request whose instances do not fit the model (an HTTP 400)."""


class Refusal(Exception):
    """A /predict request answered with an error code before the model sees it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class LinearModel:
    classes: tuple[Label, ...]
    coef: tuple[tuple[float, ...], ...]
    intercept: tuple[float, ...]
    features: tuple[str, ...] = ()

    @property
    def n_features(self) -> int:
        return len(self.coef[0])

    @classmethod
    def from_dict(cls, data: object) -> LinearModel:
        if not isinstance(data, dict):
            raise ModelError("a model is a JSON object")
        if data.get("format", FORMAT) != FORMAT:
            raise ModelError(f"format {data.get('format')!r} is not {FORMAT!r}")
        classes, coef, intercept = data.get("classes"), data.get("coef"), data.get("intercept")
        features = data.get("features", [])
        if not isinstance(classes, list) or len(classes) < 2:
            raise ModelError("classes: a list of at least two labels")
        if not all(isinstance(c, str) or _number(c) for c in classes):
            raise ModelError("classes: each label is a string or a number")
        if (
            not isinstance(coef, list)
            or not coef
            or not all(isinstance(row, list) and row and all(map(_number, row)) for row in coef)
        ):
            raise ModelError("coef: a list of rows of numbers")
        if len({len(row) for row in coef}) != 1:
            raise ModelError("coef: every row has one weight per feature")
        binary = len(classes) == 2 and len(coef) == 1
        if len(coef) != len(classes) and not binary:
            raise ModelError(
                f"coef: {len(coef)} rows for {len(classes)} classes (one row per class, "
                "or a single row for two classes)"
            )
        if not isinstance(intercept, list) or len(intercept) != len(coef):
            raise ModelError(f"intercept: a list of {len(coef)} numbers, one per row of coef")
        if not all(map(_number, intercept)):
            raise ModelError("intercept: numbers only")
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise ModelError("features: a list of names")
        if features and len(features) != len(coef[0]):
            raise ModelError(f"features: {len(features)} names for {len(coef[0])} weights a row")
        return cls(
            classes=tuple(classes),
            coef=tuple(tuple(float(w) for w in row) for row in coef),
            intercept=tuple(float(b) for b in intercept),
            features=tuple(features),
        )

    @classmethod
    def load(cls, path: Path) -> LinearModel:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: {exc}") from exc
        try:
            return cls.from_dict(data)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "classes": list(self.classes),
            "coef": [list(row) for row in self.coef],
            "intercept": list(self.intercept),
        }
        if self.features:
            out["features"] = list(self.features)
        return out

    def scores(self, x: Sequence[float]) -> list[float]:
        return [
            sum(w * v for w, v in zip(row, x, strict=True)) + b
            for row, b in zip(self.coef, self.intercept, strict=True)
        ]

    def label(self, scores: Sequence[float]) -> Label:
        if len(scores) == 1:
            return self.classes[1] if scores[0] > 0 else self.classes[0]
        return self.classes[max(range(len(scores)), key=scores.__getitem__)]

    def predict_one(self, x: Sequence[float]) -> Label:
        return self.label(self.scores(x))

    def instances(self, instances: object) -> list[list[float]]:
        """A request's `instances`, checked; BadInstances names what does not fit."""
        if not isinstance(instances, list) or not instances:
            raise BadInstances("instances: a non-empty list of feature lists")
        for i, x in enumerate(instances):
            if not isinstance(x, list) or len(x) != self.n_features or not all(map(_number, x)):
                raise BadInstances(f"instances[{i}]: a list of {self.n_features} numbers")
        return instances

    def predict(self, instances: object) -> list[Label]:
        """Labels for a request's `instances`; BadInstances names what does not fit."""
        return [self.predict_one(x) for x in self.instances(instances)]


def find_model(model_dir: Path | None) -> Path:
    """The model.json to serve: the staged one in `model_dir` if any, else the built-in one."""
    if model_dir is None or not model_dir.is_dir():
        return BUILTIN_MODEL
    if (model_dir / MODEL_FILE).is_file():
        return model_dir / MODEL_FILE
    nested = sorted(model_dir.glob(f"*/{MODEL_FILE}"))
    if len(nested) > 1:
        raise ModelError(f"{model_dir}: more than one {MODEL_FILE}: {[str(p) for p in nested]}")
    return nested[0] if nested else BUILTIN_MODEL


class FailureInjector:
    """Decides which of a stream of events (requests that fail, labels flipped) happen: exactly
    floor(n·ratio) of the first n."""

    def __init__(self, ratio: Fraction, name: str = "FAIL_RATIO") -> None:
        if not 0 <= ratio <= 1:
            raise ValueError(f"{name} must be between 0 and 1, not {ratio}")
        self.ratio = ratio
        self._count = 0
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, text: str, name: str = "FAIL_RATIO") -> FailureInjector:
        try:
            ratio = Fraction(text.strip() or "0")
        except (ValueError, ZeroDivisionError) as exc:
            raise ValueError(f"{name} {text!r} is not a number: {exc}") from exc
        return cls(ratio, name)

    def next_fails(self) -> bool:
        with self._lock:
            self._count += 1
            n = self._count
        return math.floor(n * self.ratio) > math.floor((n - 1) * self.ratio)


class Quirks:
    """How the answers depart from the model on purpose: noise in the scores (SCORE_NOISE), and
    a share of labels flipped to the next class (FLIP_RATIO)."""

    def __init__(self, flips: FailureInjector | None = None, noise: float = 0.0) -> None:
        if not (math.isfinite(noise) and noise >= 0):
            raise ValueError(f"SCORE_NOISE must be a number from 0 up, not {noise}")
        self.flips = flips or FailureInjector(Fraction(0), "FLIP_RATIO")
        self.noise = noise

    @classmethod
    def parse(cls, flip_ratio: str, noise: str) -> Quirks:
        try:
            sigma = float(noise.strip() or "0")
        except ValueError as exc:
            raise ValueError(f"SCORE_NOISE {noise!r} is not a number") from exc
        return cls(FailureInjector.parse(flip_ratio, "FLIP_RATIO"), sigma)

    def answer(self, model: LinearModel, x: Sequence[float]) -> tuple[Label, list[float]]:
        scores = model.scores(x)
        if self.noise:
            # normalvariate, unlike gauss, keeps no state between calls: safe across threads.
            scores = [s + random.normalvariate(0.0, self.noise) for s in scores]
        label = model.label(scores)
        if self.flips.next_fails():
            label = model.classes[(model.classes.index(label) + 1) % len(model.classes)]
        return label, scores


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (one per server)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "model_requests",
            "Requests to /predict, by HTTP status code of the answer.",
            ["code"],
            registry=self.registry,
        )
        self.errors = Counter(
            "model_request_errors",
            "Requests to /predict answered with a 5xx code.",
            registry=self.registry,
        )
        self.duration = Histogram(
            "model_request_duration_seconds",
            "Time to answer a request to /predict.",
            registry=self.registry,
        )
        for code in ("200", "500"):  # present from the start, so that rates are defined
            self.requests.labels(code=code)

    def observe(self, code: int, seconds: float) -> None:
        self.requests.labels(code=str(code)).inc()
        if code >= 500:
            self.errors.inc()
        self.duration.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class ModelServer(ThreadingHTTPServer):
    # In-flight requests finish on shutdown: server_close() joins their threads.
    daemon_threads = False
    block_on_close = True

    def __init__(
        self,
        address: tuple[str, int],
        model: LinearModel,
        *,
        revision: str = "unknown",
        failures: FailureInjector | None = None,
        quirks: Quirks | None = None,
        source: str = "",
    ) -> None:
        self.model = model
        self.revision = revision
        self.failures = failures or FailureInjector(Fraction(0))
        self.quirks = quirks or Quirks()
        self.source = source
        self.metrics = Metrics()
        self.stopping = threading.Event()
        super().__init__(address, Handler)

    def stop(self) -> None:
        """Stop serving; idle keep-alive connections close within Handler.timeout."""
        self.stopping.set()
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    server: ModelServer
    server_version = "stratus-model-server/1"
    protocol_version = "HTTP/1.1"  # keep-alive for load generators
    # Headers and body leave in two writes: with Nagle's algorithm a kept-alive client that
    # delays its ACK (Linux: 40 ms) would stall every answer.
    disable_nagle_algorithm = True
    timeout = 5  # seconds an idle connection is kept

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if isinstance(code, int) and code >= 400:  # errors only: a load test stays readable
            super().log_request(code, size)

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Revision", self.server.revision)
        if self.server.stopping.is_set():
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, code: int, payload: dict[str, Any]) -> None:
        self._send(code, json.dumps(payload).encode() + b"\n", "application/json")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/metrics":
            self._send(200, self.server.metrics.exposition(), CONTENT_TYPE_LATEST)
        elif path == "/":
            model = self.server.model
            info = {"classes": list(model.classes), "features": list(model.features)}
            self._send_json(
                200, {"model": info, "source": self.server.source, "revision": self.server.revision}
            )
        else:
            self._send_json(404, {"error": f"no such path: {path}"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/predict":
            self._send_json(404, {"error": f"no such path: {path}"})
            return
        started = time.perf_counter()
        code, payload = self._predict()
        payload["revision"] = self.server.revision
        self._send_json(code, payload)
        self.server.metrics.observe(code, time.perf_counter() - started)

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            raise Refusal(411, "a Content-Length header is required") from None
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True  # the body stays unread
            raise Refusal(413, f"the body is over {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length)

    def _predict(self) -> tuple[int, dict[str, Any]]:
        try:
            body = self._body()
            if self.server.failures.next_fails():
                raise Refusal(500, f"injected failure (FAIL_RATIO={self.server.failures.ratio})")
            model = self.server.model
            answers = [
                self.server.quirks.answer(model, x) for x in model.instances(instances_of(body))
            ]
            return 200, {
                "predictions": [label for label, _ in answers],
                "scores": [scores for _, scores in answers],
            }
        except Refusal as exc:
            return exc.code, {"error": exc.message}
        except BadInstances as exc:
            return 400, {"error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - an answer, and the error counted, not a hang-up
            self.log_error("predict failed: %r", exc)
            return 500, {"error": f"prediction failed: {type(exc).__name__}"}


def instances_of(body: bytes) -> object:
    """The `instances` of a /predict body; BadInstances when the body is not such an object."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInstances(f"the body is not JSON: {exc}") from exc
    if not isinstance(request, dict):
        raise BadInstances('the body is a JSON object: {"instances": [[...], ...]}')
    return request.get("instances")


def serve(env: dict[str, str]) -> int:
    revision = env.get("REVISION") or env.get("STRATUS_REVISION") or "unknown"
    try:
        failures = FailureInjector.parse(env.get("FAIL_RATIO", "0"))
        quirks = Quirks.parse(env.get("FLIP_RATIO", "0"), env.get("SCORE_NOISE", "0"))
        port = int(env.get("PORT") or "8080")
    except ValueError as exc:
        print(f"model server: {exc}", file=sys.stderr)
        return 2
    model_dir = env.get("STRATUS_MODEL_DIR")
    try:
        path = find_model(Path(model_dir) if model_dir else None)
        model = LinearModel.load(path)
    except ModelError as exc:
        print(f"model server: bad model: {exc}", file=sys.stderr)
        return 1
    # All interfaces by default: in a pod, the kubelet's probes and the Service come from outside.
    host = env.get("HOST", "0.0.0.0")  # noqa: S104
    server = ModelServer(
        (host, port),
        model,
        revision=revision,
        failures=failures,
        quirks=quirks,
        source=str(path),
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    loop.start()
    print(
        f"model server: revision {revision}, model {path} ({len(model.classes)} classes, "
        f"{model.n_features} features), FAIL_RATIO={failures.ratio}, "
        f"FLIP_RATIO={quirks.flips.ratio}, SCORE_NOISE={quirks.noise}, on {host}:{port}",
        flush=True,
    )
    while not stop.wait(0.5):
        pass
    print("model server: stopping", flush=True)
    server.stop()
    loop.join()
    return 0


def export_model(target: str) -> int:
    try:
        model = LinearModel.load(BUILTIN_MODEL)
    except ModelError as exc:
        print(f"model server: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(model.to_dict(), indent=2) + "\n"
    if target == "-":
        sys.stdout.write(text)
    else:
        Path(target).write_text(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="server.py", description="A small model server.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve the model over HTTP (the default)")
    export = sub.add_parser("export-model", help="write the built-in model as model.json")
    export.add_argument("path", help='where to write it ("-": standard output)')
    args = parser.parse_args(argv)
    if args.command == "export-model":
        return export_model(args.path)
    return serve(dict(os.environ))


if __name__ == "__main__":
    sys.exit(main())
