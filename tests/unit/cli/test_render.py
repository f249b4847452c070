"""The CLI's pure rendering: tables, the attempt timeline, the rollout state, and how a rollout
ended, from objects shaped as the API server returns them."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import yaml

from stratus.cli import render
from stratus.cli.render import INFERENCESERVICE, TRAININGJOB

NOW = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
Obj = dict[str, Any]


def at(minutes_ago: float) -> str:
    return (NOW - dt.timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def tj(status: Obj, name: str = "train") -> Obj:
    return {
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": "ml", "creationTimestamp": at(90), "uid": "u"},
        "spec": {"image": "train:1", "workers": 2, "resources": {"gpu": 8}},
        "status": status,
    }


def infs(status: Obj, generation: int = 2, steps: list[Obj] | None = None) -> Obj:
    return {
        "kind": "InferenceService",
        "metadata": {
            "name": "web",
            "namespace": "ml",
            "generation": generation,
            "creationTimestamp": at(3),
        },
        "spec": {
            "image": "serve:2",
            "rollout": {
                "steps": steps
                if steps is not None
                else [{"weight": 10, "pause": {"duration": "1m"}}, {"weight": 50, "pause": {}}]
            },
        },
        "status": status,
    }


def event(reason: str, message: str, minutes_ago: float, kind: str = "Normal") -> Obj:
    return {"type": kind, "reason": reason, "message": message, "lastTimestamp": at(minutes_ago)}


def test_table_aligns_columns_three_spaces_apart() -> None:
    assert render.table(["NAME", "PHASE"], [["a", "Running"], ["longer", "-"]]) == (
        "NAME     PHASE\na        Running\nlonger   -\n"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (119, "119s"),
        (600, "10m"),
        (3 * 3600 + 300, "3h5m"),
        (30 * 3600, "30h"),
        (5 * 86400, "5d"),
        (-3, "0s"),
    ],
)
def test_durations_read_like_kubectl_ages(seconds: float, text: str) -> None:
    assert render.duration(seconds) == text


@pytest.mark.parametrize("word", ["tj", "TrainingJob", "trainingjobs", "trainingjobs.stratus.dev"])
def test_kind_names_as_kubectl_takes_them(word: str) -> None:
    assert render.kind_named(word) is TRAININGJOB


def test_an_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"trainingjob \(tj\) or inferenceservice \(infs\)"):
        render.kind_named("pods")


def test_a_name_may_carry_its_kind() -> None:
    assert render.target("infs/web") == (INFERENCESERVICE, "web")
    assert render.target("web", TRAININGJOB) == (TRAININGJOB, "web")
    with pytest.raises(ValueError, match="not a trainingjob"):
        render.target("infs/web", TRAININGJOB)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1h30m", 5400.0)]
)
def test_timeout_flags(text: str, seconds: float) -> None:
    assert render.seconds(text) == seconds


@pytest.mark.parametrize("text", ["ten", "10x", "-5", "5m junk"])
def test_bad_timeout_flags_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        render.seconds(text)


def test_get_lists_trainingjobs_with_their_attempts_and_checkpoint() -> None:
    obj = tj(
        {
            "phase": "Running",
            "attempt": 3,
            "preemptions": 2,
            "restarts": 0,
            "lastCheckpoint": {"path": "/c/s-100", "step": 100},
        }
    )
    text = render.get_table(TRAININGJOB, [obj], NOW, namespaces=True, prefixed=True)
    header, row = text.splitlines()
    assert header.split() == [
        "NAMESPACE",
        "NAME",
        "PHASE",
        "ATTEMPT",
        "PREEMPTIONS",
        "RESTARTS",
        "CHECKPOINT",
        "AGE",
    ]
    assert row.split() == [
        "ml",
        "trainingjob/train",
        "Running",
        "3",
        "2",
        "0",
        "step",
        "100",
        "1h30m",
    ]


def test_get_shows_the_canary_weight_achieved_beside_the_one_asked() -> None:
    obj = infs(
        {
            "phase": "Progressing",
            "stableRevision": "aaa",
            "canaryRevision": "bbb",
            "canaryWeight": 50,
            "canaryWeightAchieved": 25,
            "readyReplicas": 4,
        }
    )
    row = render.get_table(INFERENCESERVICE, [obj], NOW, False, False).splitlines()[1]
    assert row.split() == ["web", "Progressing", "aaa", "bbb", "25%", "of", "50%", "4", "3m"]
    # A new resource with no status yet is Pending, never an error.
    fresh = {"metadata": {"name": "new", "namespace": "ml"}}
    assert render.get_table(INFERENCESERVICE, [fresh], NOW, False, False).splitlines()[
        1
    ].split() == [
        "new",
        "Pending",
        "-",
        "-",
        "-",
        "0",
        "-",
    ]


def test_json_and_yaml_say_the_same() -> None:
    data = render.as_list([tj({"phase": "Running"})])
    assert (
        json.loads(render.dump(data, "json")) == yaml.safe_load(render.dump(data, "yaml")) == data
    )
    assert data["kind"] == "List"


PREEMPTED_THEN_RUNNING = [
    event("AttemptStarted", "attempt 1 started on spot capacity", 60),
    event(
        "Preempted",
        "attempt 1 was preempted on node gpu-spot-1; the next attempt resumes from the latest "
        "checkpoint",
        40,
        "Warning",
    ),
    event("AttemptStarted", "attempt 2 started on spot capacity", 39),
    event("Resumed", "attempt 2 resumes from /checkpoints/step-100", 39),
    event("Restarted", "attempt 2 failed with exit code 1; restart 1 of 3", 20, "Warning"),
    event("AttemptStarted", "attempt 3 started on on-demand capacity", 19),
    event("Resumed", "attempt 3 resumes from /checkpoints/step-200", 19),
    event("ScheduledSomewhere", "not about an attempt", 18),
]


def test_the_timeline_tells_each_attempt_from_its_events_and_job() -> None:
    obj = tj({"phase": "Running", "attempt": 3, "activeJob": "train-3"})
    job = {
        "metadata": {"name": "train-3", "labels": {"stratus.dev/attempt": "3"}},
        "status": {"startTime": at(19)},
    }
    attempts = render.attempt_timeline(obj, list(reversed(PREEMPTED_THEN_RUNNING)), [job])
    assert [(a.number, a.state, a.capacity) for a in attempts] == [
        (1, "Preempted", "spot"),
        (2, "Failed", "spot"),
        (3, "Running", "on-demand"),
    ]
    assert attempts[0].detail.startswith("attempt 1 was preempted on node gpu-spot-1")
    assert attempts[1].resumed_from == "/checkpoints/step-100"
    assert (attempts[2].job, attempts[2].ended) == ("train-3", None)
    text = render.render_timeline(attempts, NOW)
    lines = text.splitlines()
    assert lines[0].split() == ["ATTEMPT", "STATE", "STARTED", "RAN", "CAPACITY", "JOB", "DETAIL"]
    assert lines[1].split()[:4] == ["#1", "Preempted", at(60), "20m"]
    assert lines[3].split()[:6] == ["#3", "Running", at(19), "19m+", "on-demand", "train-3"]
    assert "resumed from /checkpoints/step-200" in lines[3]


def test_an_attempt_waiting_out_its_backoff_says_when_it_starts() -> None:
    obj = tj({"phase": "Restarting", "attempt": 2, "nextAttemptAt": "2025-01-01T12:00:40Z"})
    events = [
        *PREEMPTED_THEN_RUNNING[:1],
        event("Restarted", "attempt 1 failed with exit code 3; restart 1 of 3", 1, "Warning"),
    ]
    attempts = render.attempt_timeline(obj, events, [])
    assert [(a.number, a.state) for a in attempts] == [(1, "Failed"), (2, "Waiting")]
    assert attempts[1].detail == "starts at 2025-01-01T12:00:40Z (backoff)"


def test_a_run_ended_by_its_deadline_ends_the_current_attempt() -> None:
    obj = tj({"phase": "Failed", "attempt": 1})
    events = [
        *PREEMPTED_THEN_RUNNING[:1],
        event("Failed", "activeDeadlineSeconds (60s) passed across all attempts", 2, "Warning"),
    ]
    (attempt,) = render.attempt_timeline(obj, events, [])
    assert (attempt.state, attempt.ended) == ("Failed", at(2))
    assert attempt.detail.startswith("activeDeadlineSeconds")


def test_attempts_whose_events_expired_are_listed_by_number_and_say_so() -> None:
    obj = tj({"phase": "Suspended", "attempt": 3})
    events = [event("Suspended", "attempt 3 stopped: the TrainingJob is suspended", 1)]
    attempts = render.attempt_timeline(obj, events, [])
    assert [(a.number, a.state) for a in attempts] == [
        (1, "Unknown"),
        (2, "Unknown"),
        (3, "Suspended"),
    ]
    assert attempts[0].detail == "no record left (its Events have expired)"
    assert attempts[0].as_json() == {
        "number": 1,
        "state": "Unknown",
        "detail": "no record left (its Events have expired)",
    }


def test_describe_trainingjob_has_spec_attempts_conditions_and_events() -> None:
    obj = tj(
        {
            "phase": "Running",
            "attempt": 1,
            "gpuSeconds": 7200,
            "lastCheckpoint": {"path": "/c/s-5", "step": 5},
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Running",
                    "message": "1 running",
                    "lastTransitionTime": at(5),
                }
            ],
        }
    )
    events = PREEMPTED_THEN_RUNNING[:1]
    attempts = render.attempt_timeline(obj, events, [])
    text = render.describe_trainingjob(obj, attempts, events, NOW)
    assert "Workers:     2 x 8 GPU\n" in text
    assert "Last checkpoint: /c/s-5 (step 5)\n" in text
    assert "GPU time:    2h\n" in text
    assert "Attempts:\n  ATTEMPT" in text
    assert "  Ready   True     Running   5m    1 running\n" in text
    assert "  Normal   AttemptStarted   1h    attempt 1 started on spot capacity\n" in text


CANARY = {
    "phase": "Progressing",
    "observedGeneration": 2,
    "stableRevision": "aaa",
    "canaryRevision": "bbb",
    "canaryWeight": 50,
    "canaryWeightAchieved": 50,
    "currentStep": 1,
    "readyReplicas": 4,
    "lastAnalysis": {
        "time": "2025-01-01T11:59:00Z",
        "failures": 0,
        "inconclusive": 1,
        "results": [
            {"name": "error-rate", "value": 0.01, "verdict": "Passed"},
            {"name": "p99", "verdict": "Inconclusive"},
        ],
    },
    "validation": {
        "revision": "bbb",
        "phase": "Passed",
        "reason": "every comparator passed",
        "results": [
            {
                "name": "label",
                "source": "replay",
                "samples": 200,
                "agreement": 0.995,
                "verdict": "Passed",
            }
        ],
    },
    "conditions": [
        {
            "type": "Healthy",
            "status": "False",
            "reason": "CanaryInProgress",
            "message": "canary at 50%",
        }
    ],
}


def test_the_rollout_marks_the_steps_done_and_the_current_one() -> None:
    assert render.render_rollout(infs(CANARY)) == (
        "ml/web: Progressing\n"
        "  stable:  aaa (4 ready replicas, all revisions)\n"
        "  canary:  bbb at 50%\n"
        "  steps:\n"
        "    done step 1: 10%, hold 1m\n"
        "    ->   step 2: 50%, until promoted\n"
        "  analysis at 2025-01-01T11:59:00Z: 0 failed, 1 inconclusive\n"
        "    error-rate: 0.01 (Passed)\n"
        "    p99: no data (Inconclusive)\n"
        "  validation of bbb: Passed (every comparator passed)\n"
        "    label (replay): 99.5% agreement over 200 samples (Passed)\n"
        "  Healthy=False CanaryInProgress: canary at 50%\n"
    )


def test_a_rolled_back_rollout_names_the_revision_and_the_way_back() -> None:
    status = {
        "phase": "Degraded",
        "observedGeneration": 2,
        "stableRevision": "aaa",
        "abortedRevision": "bbb",
        "canaryWeight": 0,
    }
    lines = render.rollout_lines(infs(status, steps=[]))
    assert lines[:4] == [
        "stable:  aaa (0 ready replicas, all revisions)",
        "rolled back: bbb (stratus retry to try again)",
        "steps:",
        "       step 1: 100%, hold one analysis interval",
    ]


def test_describe_inferenceservice_lists_revisions_by_role() -> None:
    deployments = [
        {
            "metadata": {"name": "web-aaa", "labels": {"stratus.dev/revision": "aaa"}},
            "spec": {"replicas": 2},
            "status": {"readyReplicas": 2},
        },
        {
            "metadata": {"name": "web-bbb", "labels": {"stratus.dev/revision": "bbb"}},
            "spec": {"replicas": 2},
            "status": {},
        },
    ]
    text = render.describe_inferenceservice(infs(CANARY), deployments, [], NOW)
    assert "Rollout:\n  stable:  aaa" in text
    assert "  aaa        stable   2/2     web-aaa\n" in text
    assert "  bbb        canary   0/2     web-bbb\n" in text
    assert "Events:\n  <none>\n" in text


@pytest.mark.parametrize(
    ("status", "generation", "outcome"),
    [
        ({"phase": "Healthy", "observedGeneration": 2}, 2, render.HEALTHY),
        ({"phase": "Degraded", "observedGeneration": 2}, 2, render.DEGRADED),
        ({"phase": "Paused", "observedGeneration": 2, "canaryRevision": "b"}, 2, render.PAUSED),
        ({"phase": "Progressing", "observedGeneration": 2, "canaryRevision": "b"}, 2, None),
        # Healthy from before the spec changed: the operator has not seen the new revision.
        ({"phase": "Healthy", "observedGeneration": 1}, 2, None),
        ({}, 1, None),
    ],
)
def test_how_a_rollout_stands(status: Obj, generation: int, outcome: int | None) -> None:
    assert render.rollout_outcome(infs(status, generation)) == outcome


def test_progress_lines_say_where_the_rollout_is() -> None:
    assert render.progress(infs({"phase": "Healthy", "observedGeneration": 1})) == (
        "waiting for the operator to act on generation 2"
    )
    assert render.progress(infs(CANARY)) == "Progressing: canary bbb step 2 of 2, at 50%"
    validating = {**CANARY, "currentStep": None, "message": "validating"}
    assert render.progress(infs(validating)) == (
        "Progressing: canary bbb validating, at 50% (validating)"
    )


def test_a_command_not_yet_acted_on_keeps_the_rollout_unsettled() -> None:
    """`stratus promote web && stratus rollout status web --watch`: the Paused status is from
    before the promote until the operator records the annotation's value as handled."""
    paused = infs({"phase": "Paused", "observedGeneration": 2, "canaryRevision": "b"})
    paused["metadata"]["annotations"] = {"stratus.dev/promote": "17"}
    assert render.rollout_outcome(paused) is None
    assert render.progress(paused) == "waiting for the operator to act on stratus.dev/promote"
    paused["status"]["handledCommands"] = {"stratus.dev/promote": "17"}
    assert render.rollout_outcome(paused) == render.PAUSED
