"""Replay against real model servers on loopback: a faithful candidate passes, a label-flipping
one fails with examples that name their lines, bad request sets name the line, expected answers
give accuracy, and credentials go to the baseline without reaching any message."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from stratus.api.validation import Comparator
from stratus.validation import client, replay
from stratus.validation.client import Endpoint
from stratus.validation.report import Example, SourceResult
from tests.unit.validation.servers import Seen, json_reply, model, stub, write_requests

LABELS = Comparator(name="labels", type="label", fields=["predictions"])
EXACT = Comparator(name="exact", type="exact", fields=["predictions"])


def _run(
    requests: list[replay.Recorded],
    baseline: str,
    candidate: str,
    comparators: list[Comparator] | None = None,
    *,
    noise_floor: bool = True,
    min_agreement: float = 0.99,
) -> tuple[SourceResult, list[Example]]:
    return replay.replay(
        requests,
        comparators or [LABELS, EXACT],
        candidate=Endpoint(candidate + "/predict"),
        baseline=Endpoint(baseline + "/predict"),
        min_agreement=min_agreement,
        noise_floor=noise_floor,
    )


def test_a_faithful_candidate_passes_and_expected_answers_give_accuracy(tmp_path: Path) -> None:
    requests = replay.load(write_requests(tmp_path / "r.jsonl", 40, expected=True), 1000)
    with model("rev-a") as baseline, model("rev-b") as candidate:
        result, examples = _run(requests, baseline, candidate)
    assert result.requests == 40
    assert result.errors == 0
    assert {name: d.verdict for name, d in result.decisions.items()} == {
        "labels": "Passed",
        "exact": "Passed",
    }
    assert result.tallies["labels"].compared == 40
    assert result.tallies["labels"].noise_compared == 40  # the baseline asked twice
    assert result.accuracy == {"candidate": 1.0, "baseline": 1.0}
    assert examples == []


def test_a_label_flipping_candidate_fails_with_examples_naming_lines(tmp_path: Path) -> None:
    requests = replay.load(write_requests(tmp_path / "r.jsonl", 40, expected=True), 1000)
    with model("rev-a") as baseline, model("rev-b", flip="1/4") as candidate:
        result, examples = _run(requests, baseline, candidate, noise_floor=False)
    labels = result.tallies["labels"]
    assert (labels.compared, labels.agreed, labels.noise_compared) == (40, 30, 0)
    assert result.decisions["labels"].verdict == "Failed"
    assert "75.0%" in result.decisions["labels"].reason
    assert result.accuracy == {"candidate": 0.75, "baseline": 1.0}
    assert 0 < len([e for e in examples if e.comparator == "labels"]) <= 3
    lines = {e.line for e in examples}
    assert lines <= set(range(1, 41))
    assert all(e.detail.startswith("predictions") for e in examples)
    # Only the compared fields are shown: never the revision the answers also carry.
    assert all("revision" not in json.dumps(e.candidate) for e in examples)


def test_the_limit_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('\n{"instances": [[1, 2]]}\n\n  \n{"instances": [[3, 4]]}\n[1]\n')
    loaded = replay.load(path, 2)
    assert [r.line for r in loaded] == [2, 5]
    assert json.loads(loaded[1].body) == {"instances": [[3, 4]]}
    assert replay.load(path, 10)[-1].body == b"[1]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"instances": [[1, 2]]}\n{"instances": [[1, \n', "line 2: not JSON"),
        ("\n\n{nope}\n", "line 3: not JSON"),
        ("\n \n", "no requests"),
        (b"\xff\xfe{}".decode("latin-1"), None),
    ],
)
def test_a_bad_request_set_names_the_line(tmp_path: Path, text: str, message: str | None) -> None:
    path = tmp_path / "r.jsonl"
    if message is None:
        path.write_bytes(b"\xff\xfe{}\n")
        message = "not UTF-8"
    else:
        path.write_text(text)
    with pytest.raises(replay.RequestSetError, match=message):
        replay.load(path, 100)


def test_a_missing_request_set() -> None:
    with pytest.raises(replay.RequestSetError, match="cannot read"):
        replay.load(Path("/nonexistent/requests.jsonl"), 10)


def test_a_wrapper_needs_only_request_and_expected_keys() -> None:
    wrapped = replay.parse_line('{"request": {"a": 1}, "expected": {"b": 2}}', 7)
    assert wrapped is not None
    assert (wrapped.line, json.loads(wrapped.body), wrapped.expected) == (7, {"a": 1}, {"b": 2})
    plain = replay.parse_line('{"request": 1, "other": 2}', 8)
    assert plain is not None
    assert json.loads(plain.body) == {"request": 1, "other": 2}
    assert plain.expected is replay.NO_EXPECTATION


def test_an_unreachable_candidate_disagrees_and_an_unreachable_baseline_is_an_error(
    tmp_path: Path,
) -> None:
    requests = replay.load(write_requests(tmp_path / "r.jsonl", 5), 100)
    with model() as up:
        down = "http://127.0.0.1:9"  # discard: nothing listens
        result, examples = _run(requests, up, down, [EXACT], noise_floor=False)
        assert result.tallies["exact"].compared == 5
        assert result.tallies["exact"].agreed == 0
        assert result.decisions["exact"].verdict == "Failed"
        assert examples[0].candidate["status"] == 0
        result, _ = _run(requests, down, up, [EXACT], noise_floor=False)
    assert result.errors == 5
    assert result.tallies["exact"].compared == 0
    assert result.decisions["exact"].verdict == "Failed"
    assert "no samples" in result.decisions["exact"].reason


def test_text_and_error_answers_are_compared_as_they_are(tmp_path: Path) -> None:
    requests = replay.load(write_requests(tmp_path / "r.jsonl", 4), 100)
    whole = Comparator(name="whole", type="exact")

    def text(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "text/plain"}, b"label: " + seen.body[-4:]

    with stub(text) as a, stub(text) as b, stub(json_reply(503, {"e": 1})) as broken:
        result, _ = _run(requests, a.url, b.url, [whole], noise_floor=False)
        assert result.decisions["whole"].verdict == "Passed"
        result, _ = _run(requests, broken.url, broken.url, [whole], noise_floor=False)
        assert result.decisions["whole"].verdict == "Passed"  # the same error on both sides
        result, examples = _run(requests, a.url, broken.url, [whole], noise_floor=False)
    assert result.decisions["whole"].verdict == "Failed"
    assert examples[0].detail == "status 200 vs 503"


def test_a_hook_judges_each_pair(tmp_path: Path) -> None:
    requests = replay.load(write_requests(tmp_path / "r.jsonl", 6), 100)

    def judge(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        pair = json.loads(seen.body)
        agree = pair["baseline"] == pair["candidate"]
        return 200, {"Content-Type": "application/json"}, json.dumps({"agree": agree}).encode()

    with stub(judge) as hook, model("a") as baseline, model("b", flip="1/2") as candidate:
        comparator = Comparator(name="hook", type="hook", fields=["predictions"], url=hook.url)
        result, _ = _run(requests, baseline, candidate, [comparator], noise_floor=False)
        assert len(hook.seen) == 6
    assert (result.tallies["hook"].compared, result.tallies["hook"].agreed) == (6, 3)
    assert set(json.loads(hook.seen[0].body)) == {"baseline", "candidate"}


def test_a_hook_that_gives_no_verdict_is_an_error(tmp_path: Path) -> None:
    requests = replay.load(write_requests(tmp_path / "r.jsonl", 3), 100)
    with stub(json_reply(200, {"maybe": 1})) as hook, model() as up:
        comparator = Comparator(name="hook", type="hook", url=hook.url)
        result, _ = _run(requests, up, up, [comparator], noise_floor=False)
    assert result.errors == 3
    assert result.tallies["hook"].compared == 0


def test_baseline_credentials_are_sent_and_never_shown(tmp_path: Path) -> None:
    token = "s3cr3t-t0ken"
    requests = replay.load(write_requests(tmp_path / "r.jsonl", 2), 100)
    env = {client.TOKEN_ENV: token}
    with stub(json_reply(200, {"predictions": ["x"]})) as external, model() as candidate:
        result, _ = replay.replay(
            requests,
            [EXACT],
            candidate=Endpoint(candidate + "/predict"),
            baseline=client.baseline_endpoint(external.url + "/v1/models/m:predict", env),
            min_agreement=0.99,
            noise_floor=False,
        )
    assert {s.headers["Authorization"] for s in external.seen} == {f"Bearer {token}"}
    assert {s.path for s in external.seen} == {"/v1/models/m:predict"}
    assert result.decisions["exact"].verdict == "Failed"
    basic = client.credentials({client.USERNAME_ENV: "me", client.PASSWORD_ENV: "pw"})
    assert basic == {"Authorization": "Basic bWU6cHc="}
    # Unreachable, with the secret in the headers and the URL: neither reaches the message.
    endpoint = client.baseline_endpoint("http://me:pw@127.0.0.1:9/p?key=k3y", env)
    answer, _ = client.post(endpoint, b"{}")
    shown = f"{answer.error} {endpoint} {endpoint!r}"
    assert answer.status == 0
    assert "127.0.0.1:9/p" in answer.error
    for secret in (token, "pw", "k3y"):
        assert secret not in shown


def test_nothing_is_sent_past_the_deadline(tmp_path: Path) -> None:
    requests = replay.load(write_requests(tmp_path / "r.jsonl", 5), 100)
    with model() as up:
        result, _ = replay.replay(
            requests,
            [EXACT],
            candidate=Endpoint(up + "/predict"),
            baseline=Endpoint(up + "/predict"),
            min_agreement=0.99,
            noise_floor=False,
            deadline=time.monotonic(),
        )
    assert result.requests == 0
    assert result.decisions["exact"].verdict == "Failed"
