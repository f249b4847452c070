"""`stratus validate` against real model servers on loopback: exit 0 when the candidate passes,
1 when it fails, 2 on bad usage or input; text and JSON output; comparators from --compare or a
--spec (a validation stanza, or an InferenceService); headers sent and never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stratus import cli
from tests.unit.validation.servers import Seen, json_reply, model, stub, write_requests


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["validate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_faithful_candidate_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    requests = write_requests(tmp_path / "r.jsonl", 20, expected=True)
    with model("a") as baseline, model("b") as candidate:
        code, out, _ = validate(
            capsys,
            *("--baseline", baseline + "/predict", "--candidate", candidate + "/predict"),
            *("--requests", str(requests), "--compare", "label:predictions"),
        )
    assert code == 0
    assert out.startswith("Passed: replay: label: 100.0% agreement")
    assert "candidate accuracy 100.0%" in out


def test_a_flipping_candidate_fails_in_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    requests = write_requests(tmp_path / "r.jsonl", 20)
    with model("a") as baseline, model("b", flip="1/5") as candidate:
        code, out, _ = validate(
            capsys,
            *("--baseline", baseline + "/predict", "--candidate", candidate + "/predict"),
            *("--requests", str(requests), "--compare", "label:predictions"),
            *("--compare", "exact:predictions,scores", "--min-agreement", "0.9", "-o", "json"),
        )
    assert code == 1
    written = json.loads(out)
    assert written["verdict"] == "Failed"
    by_name = {r["name"]: r for r in written["results"]}
    assert by_name["label"]["agreement"] == 0.8
    assert by_name["label"]["noiseFloor"] == 0.0
    assert by_name["exact"]["verdict"] == "Failed"


@pytest.mark.parametrize("shape", ["stanza", "wrapped", "inferenceservice"])
def test_comparators_from_a_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], shape: str
) -> None:
    stanza = {
        "comparators": [{"name": "top", "type": "topK", "fields": ["scores"], "k": 1}],
        "minAgreement": 0.5,
        "noiseFloor": False,
    }
    document = {
        "stanza": stanza,
        "wrapped": {"validation": stanza},
        "inferenceservice": {
            "apiVersion": "stratus.dev/v1alpha1",
            "kind": "InferenceService",
            "spec": {"rollout": {"validation": stanza}},
        },
    }[shape]
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(document))
    requests = write_requests(tmp_path / "r.jsonl", 10)
    with model("a") as baseline, model("b", flip="1/2") as candidate:
        code, out, _ = validate(
            capsys,
            *("--baseline", baseline + "/predict", "--candidate", candidate + "/predict"),
            *("--requests", str(requests), "--spec", str(spec), "-o", "json"),
        )
    # Flipped labels keep their scores: the top score's position still agrees.
    assert code == 0
    assert json.loads(out)["results"][0]["name"] == "top"


def test_headers_are_sent_and_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    requests = write_requests(tmp_path / "r.jsonl", 3)
    secret = "Bearer hunter2"

    def refuse(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        status = 200 if seen.headers.get("Authorization") == secret else 401
        return status, {"Content-Type": "application/json"}, b'{"predictions": [1]}'

    with stub(refuse) as baseline, stub(json_reply(200, {"predictions": [2]})) as candidate:
        code, out, err = validate(
            capsys,
            *("--baseline", baseline.url + "/p", "--candidate", candidate.url + "/p"),
            *("--requests", str(requests), "--compare", "exact:predictions"),
            *("--header", f"Authorization={secret}", "--no-noise-floor"),
        )
    assert code == 1
    assert len(baseline.seen) == 3  # once each: no noise floor
    assert "exact (replay line 1): predictions.0: 1 vs 2" in out
    assert "hunter2" not in out + err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--compare", "fuzzy:predictions"], "type"),
        (["--compare", "hook:x"], "needs --spec"),
        (["--compare", "label:a", "--compare", "label:b"], "unique"),
        ([], "give --spec"),
        (["--compare", "exact", "--header", "novalue"], "NAME=VALUE"),
    ],
)
def test_bad_usage_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    requests = write_requests(tmp_path / "r.jsonl", 1)
    code, _, err = validate(
        capsys,
        *("--baseline", "http://127.0.0.1:9/p", "--candidate", "http://127.0.0.1:9/p"),
        *("--requests", str(requests)),
        *args,
    )
    assert code == 2
    assert message in err


def test_a_bad_request_set_or_url_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    requests = tmp_path / "r.jsonl"
    requests.write_text('{"instances": [[1, 2]]}\nnot json\n')
    common = ["--compare", "exact", "--candidate", "http://127.0.0.1:9/p"]
    code, _, err = validate(
        capsys, *common, "--baseline", "http://127.0.0.1:9/p", "--requests", str(requests)
    )
    assert (code, "line 2: not JSON" in err) == (2, True)
    code, _, err = validate(
        capsys, *common, "--baseline", "ftp://x:pw@host/p", "--requests", str(requests)
    )
    assert code == 2
    assert "not an http" in err
    assert "pw" not in err
    code, _, err = validate(
        capsys, *common, "--baseline", "http://h/p", "--requests", str(tmp_path / "none")
    )
    assert (code, "cannot read" in err) == (2, True)
    with pytest.raises(SystemExit) as exited:
        cli.main(["validate", "--compare", "exact"])
    assert exited.value.code == 2
