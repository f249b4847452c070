"""The example model server (examples/serve/server.py) without its image: predictions from a
model.json computed by hand, the exact share of injected failures, and its HTTP endpoints on a
loopback port (health, predictions with the revision, Prometheus counters)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from tests.model_server import server

# Three classes over two features, easy to check by hand: class k wins where its score is highest.
MODEL: dict[str, Any] = {
    "format": "stratus.dev/linear-classifier/v1",
    "classes": ["low", "mid", "high"],
    "coef": [[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]],
    "intercept": [0.0, 0.5, 0.0],
}


def test_prediction_is_the_argmax_of_the_linear_scores() -> None:
    model = server.LinearModel.from_dict(MODEL)
    # x0 = -2: scores 2, 0.5, -2 -> low; x0 = 0: 0, 0.5, 0 -> mid; x0 = 3: -3, 0.5, 3 -> high.
    assert model.predict([[-2, 7], [0, 0], [3, -1]]) == ["low", "mid", "high"]
    assert model.to_dict() == MODEL


def test_two_classes_with_one_row_is_the_binary_form() -> None:
    model = server.LinearModel.from_dict(
        {"classes": [0, 1], "coef": [[2.0, -1.0]], "intercept": [-1.0]}
    )
    assert model.predict([[1, 0], [0, 0], [1, 1]]) == [1, 0, 0]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"classes": ["only"]}, "classes"),
        ({"coef": [[1.0], [1.0, 2.0], [0.0, 0.0]]}, "coef"),
        ({"coef": [[1.0, 0.0]]}, "coef"),
        ({"intercept": [0.0]}, "intercept"),
        ({"format": "sklearn-pickle"}, "format"),
        ({"features": ["a"]}, "features"),
    ],
)
def test_a_bad_model_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(server.ModelError, match=field):
        server.LinearModel.from_dict({**MODEL, **change})


def test_instances_that_do_not_fit_are_refused() -> None:
    model = server.LinearModel.from_dict(MODEL)
    for bad in (None, [], [[1.0]], [[1.0, "2"]], [[True, 1.0]], [1.0, 2.0]):
        with pytest.raises(server.BadInstances):
            model.predict(bad)


def test_the_built_in_model_is_used_unless_one_is_staged(tmp_path: Path) -> None:
    assert server.find_model(None) == server.BUILTIN_MODEL
    assert server.find_model(tmp_path) == server.BUILTIN_MODEL
    nested = tmp_path / "rev-1" / "model.json"
    nested.parent.mkdir()
    nested.write_text(json.dumps(MODEL))
    assert server.find_model(tmp_path) == nested
    top = tmp_path / "model.json"
    top.write_text(json.dumps(MODEL))
    assert server.find_model(tmp_path) == top


@pytest.mark.parametrize("ratio", ["0", "0.1", "0.29", "1/3", "0.5", "0.97", "1"])
def test_fail_ratio_is_exact_over_100_requests(ratio: str) -> None:
    failures = server.FailureInjector.parse(ratio)
    outcomes = [failures.next_fails() for _ in range(100)]
    assert sum(outcomes) == int(100 * Fraction(ratio))
    assert sum(outcomes[:10]) == int(10 * Fraction(ratio))  # spread, not bunched at the end


@pytest.mark.parametrize("ratio", ["-0.1", "1.5", "lots"])
def test_a_fail_ratio_out_of_range_is_refused(ratio: str) -> None:
    with pytest.raises(ValueError, match="FAIL_RATIO"):
        server.FailureInjector.parse(ratio)


@pytest.fixture
def running() -> Iterator[Any]:
    model = server.LinearModel.from_dict(MODEL)
    httpd = server.ModelServer(
        ("127.0.0.1", 0),
        model,
        revision="rev-b",
        failures=server.FailureInjector.parse("0.25"),
    )
    loop = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    loop.start()
    try:
        yield httpd
    finally:
        httpd.stop()
        loop.join(timeout=10)
    assert not loop.is_alive()


def _url(httpd: Any, path: str) -> str:
    host, port = httpd.server_address[:2]
    return f"http://{host}:{port}{path}"


def _post(httpd: Any, body: bytes) -> tuple[int, dict[str, Any], str]:
    request = urllib.request.Request(
        _url(httpd, "/predict"), data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read()), resp.headers["X-Revision"]
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read()), err.headers["X-Revision"]


def _metrics(httpd: Any) -> dict[str, float]:
    with urllib.request.urlopen(_url(httpd, "/metrics"), timeout=10) as resp:
        text = resp.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_http_endpoints(running: Any) -> None:
    with urllib.request.urlopen(_url(running, "/healthz"), timeout=10) as resp:
        assert (resp.status, resp.read(), resp.headers["X-Revision"]) == (200, b"ok\n", "rev-b")

    body = json.dumps({"instances": [[-2, 7], [0, 0], [3, -1]]}).encode()
    answers = [_post(running, body) for _ in range(8)]
    # FAIL_RATIO 1/4: requests 4 and 8 fail, the others predict; every answer names the revision.
    assert [code for code, _, _ in answers] == [200, 200, 200, 500] * 2
    assert all(rev == "rev-b" and payload["revision"] == "rev-b" for _, payload, rev in answers)
    assert answers[0][1]["predictions"] == ["low", "mid", "high"]
    assert "injected" in answers[3][1]["error"]

    code, payload, _ = _post(running, b'{"instances": [[1]]}')  # the 9th: not a failure turn
    assert code == 400
    assert "instances[0]" in payload["error"]

    samples = _metrics(running)
    assert samples['model_requests_total{code="200"}'] == 6
    assert samples['model_requests_total{code="500"}'] == 2
    assert samples['model_requests_total{code="400"}'] == 1
    assert samples["model_request_errors_total"] == 2
    assert samples["model_request_duration_seconds_count"] == 9

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(_url(running, "/nowhere"), timeout=10)
    assert err.value.code == 404
    err.value.close()


def test_export_model_writes_the_built_in_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builtin = tmp_path / "builtin.json"
    builtin.write_text(json.dumps(MODEL))
    monkeypatch.setattr(server, "BUILTIN_MODEL", builtin)
    out = tmp_path / "exported" / "model.json"
    out.parent.mkdir()
    assert server.main(["export-model", str(out)]) == 0
    assert json.loads(out.read_text()) == MODEL


def test_flipped_labels_are_the_exact_share_and_the_next_class() -> None:
    model = server.LinearModel.from_dict(MODEL)
    quirks = server.Quirks.parse("1/4", "0")
    answers = [quirks.answer(model, [3.0, 0.0]) for _ in range(8)]
    # "high" is the last class: flipped, it becomes the first. The 4th and 8th are flipped.
    assert [label for label, _ in answers] == ["high", "high", "high", "low"] * 2
    assert all(scores == [-3.0, 0.5, 3.0] for _, scores in answers)


def test_score_noise_moves_scores_and_labels_near_a_boundary_only() -> None:
    model = server.LinearModel.from_dict(MODEL)
    quirks = server.Quirks.parse("0", "0.1")
    near = {quirks.answer(model, [0.51, 0.0])[0] for _ in range(200)}
    far = {quirks.answer(model, [5.0, 0.0])[0] for _ in range(200)}
    assert near == {"mid", "high"}  # mid and high meet at x0 = 0.5
    assert far == {"high"}
    assert quirks.answer(model, [5.0, 0.0])[1] != [-5.0, 0.5, 5.0]


@pytest.mark.parametrize(
    ("flips", "noise", "message"),
    [
        ("2", "0", "FLIP_RATIO must be between"),
        ("0", "-1", "SCORE_NOISE"),
        ("0", "x", "SCORE_NOISE"),
    ],
)
def test_bad_quirks_are_named(flips: str, noise: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        server.Quirks.parse(flips, noise)


def test_answers_carry_scores(running: Any) -> None:
    code, payload, _ = _post(running, json.dumps({"instances": [[3, 0]]}).encode())
    assert code == 200
    assert payload["predictions"] == ["high"]
    assert payload["scores"] == [[-3.0, 0.5, 3.0]]
