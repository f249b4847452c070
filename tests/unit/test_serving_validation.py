"""The validation stage of a rollout without a cluster: the candidate at weight 0 behind a
narrowed Service, the validator Job made once the revisions' Services have addresses and the
candidate is ready, the Service switched to the shadow proxy while it serves, and the report
passing the candidate on to its first step or rolling it back; a validator that fails, a stage
past its timeout, and `stratus promote` skipping it. Also the Job itself and what is read back
from the validator pod."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from stratus.serving import planner, validator
from stratus.serving.revision import revision_of
from stratus.serving.validator import ValidatorView, validator_view
from stratus.serving.views import ChildView
from tests.unit.test_serving_planner import NOW, OWNER, observe, spec

VALIDATION: dict[str, Any] = {
    "shadow": {"samples": 500},
    "comparators": [{"name": "labels", "type": "label", "fields": ["predictions"]}],
    "minAgreement": 0.98,
    "timeout": "10m",
}
PASSED = {
    "verdict": "Passed",
    "reason": "labels: 99.6% agreement over 500 samples",
    "results": [
        {
            "name": "labels",
            "source": "shadow",
            "samples": 500,
            "agreement": 0.996,
            "noiseFloor": 0.0,
            "adjusted": 0.996,
            "verdict": "Passed",
        }
    ],
    "requests": {"shadow": 512},
    "shadowOverheadMs": {"p50": 0.7, "p99": 2.5},
    "examples": [],
}


def _services(*revisions: str) -> tuple[ChildView, ...]:
    return tuple(
        ChildView("Service", f"web-{r}", {}, ("uid",), {"clusterIP": f"10.0.0.{i + 1}"})
        for i, r in enumerate(revisions)
    )


def _start(**validation: Any) -> tuple[Any, dict[str, Any], str, str]:
    old = spec("serve:1", replicas={"min": 4, "max": 4})
    new = spec("serve:2", replicas={"min": 4, "max": 4}, validation={**VALIDATION, **validation})
    stable = planner.plan(observe(old, {}, {})).status
    status = planner.plan(observe(new, stable, {revision_of(old): 4})).status
    return new, status, revision_of(old), revision_of(new)


def _service(plan: planner.Plan) -> dict[str, Any] | None:
    return next(
        (m for m in plan.apply if m["kind"] == "Service" and m["metadata"]["name"] == OWNER.name),
        None,
    )


def _jobs(plan: planner.Plan) -> list[dict[str, Any]]:
    return [m for m in plan.apply if m["kind"] == "Job"]


def test_a_candidate_is_validated_at_weight_zero_behind_the_stable_only() -> None:
    new, status, stable, canary = _start()
    assert (status["canaryRevision"], status["canaryWeight"]) == (canary, 0)
    assert status["validation"] == {
        "revision": canary,
        "phase": "Running",
        "startedAt": "2026-01-01T12:00:00.000Z",
    }
    plan = planner.plan(observe(new, status, {stable: 4}))
    # One candidate replica (validation.replicas); the stable keeps its size and all traffic.
    assert {
        m["metadata"]["name"]: m["spec"]["replicas"]
        for m in plan.apply
        if m["kind"] == "Deployment"
    } == {f"web-{canary}": 1}
    service = _service(plan)
    assert service is not None
    assert service["spec"]["selector"] == {
        "stratus.dev/inferenceservice": "web",
        "stratus.dev/revision": stable,
    }
    names = {m["metadata"]["name"] for m in plan.apply if m["kind"] == "Service"}
    assert {f"web-{stable}", f"web-{canary}"} <= names
    # No Job before the revisions' Services have addresses and the candidate is ready.
    assert _jobs(plan) == []
    unready = planner.plan(observe(new, status, {stable: 4}, children=_services(stable, canary)))
    assert _jobs(unready) == []
    ready = planner.plan(
        observe(new, status, {stable: 4, canary: 1}, children=_services(stable, canary))
    )
    (job,) = _jobs(ready)
    env = {
        e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["STRATUS_STABLE_URL"] == "http://10.0.0.1:80"
    assert env["STRATUS_CANDIDATE_URL"] == "http://10.0.0.2:80"
    assert json.loads(env["STRATUS_VALIDATION"])["minAgreement"] == 0.98
    assert ready.status["canaryWeight"] == 0


def test_the_service_points_to_the_shadow_proxy_only_while_it_serves() -> None:
    new, status, stable, canary = _start()
    serving = ValidatorView(canary, ready=True)
    plan = planner.plan(
        observe(
            new,
            status,
            {stable: 4, canary: 1},
            children=_services(stable, canary),
            validators=(serving,),
        )
    )
    service = _service(plan)
    assert service is not None
    assert service["spec"]["selector"] == {
        "stratus.dev/validates": "web",
        "stratus.dev/revision": canary,
    }
    # Its report container ends while the proxy still serves: not Ready, still an endpoint.
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert _jobs(plan) == []  # already there
    stopped = planner.plan(
        observe(
            new,
            status,
            {stable: 4, canary: 1},
            children=_services(stable, canary),
            validators=(ValidatorView(canary, ready=False),),
        )
    )
    service = _service(stopped)
    assert service is not None
    assert service["spec"]["selector"]["stratus.dev/revision"] == stable
    assert service["spec"]["publishNotReadyAddresses"] is False


def test_a_passing_report_starts_the_first_step_and_cleans_up() -> None:
    new, status, stable, canary = _start()
    later = NOW + dt.timedelta(minutes=2)
    plan = planner.plan(
        observe(
            new,
            status,
            {stable: 4, canary: 1},
            now=later,
            children=_services(stable, canary),
            validators=(ValidatorView(canary, ready=True, report=PASSED),),
        )
    )
    record = plan.status["validation"]
    assert record["phase"] == "Passed"
    assert record["results"] == PASSED["results"]
    assert record["shadowOverheadMs"] == {"p50": 0.7, "p99": 2.5}
    assert record["requests"] == {"shadow": 512}
    assert (plan.status["canaryWeight"], plan.status["currentStep"]) == (20, 0)
    assert [e.reason for e in plan.events] == ["ValidationPassed", "CanaryStarted"]
    service = _service(plan)
    assert service is not None
    assert service["spec"]["selector"] == {"stratus.dev/inferenceservice": "web"}
    assert ("batch/v1", "Job", f"web-{canary}") in plan.remove
    # Once its pod drains, the Job is not deleted again on every pass.
    draining = ValidatorView(canary, ready=True, report=PASSED, terminating=True)
    again = planner.plan(observe(new, plan.status, {stable: 4, canary: 1}, validators=(draining,)))
    assert not [r for r in again.remove if r[1] == "Job"]
    # Without an HTTPRoute, the revisions' Services were for the validator only.
    assert {("v1", "Service", f"web-{stable}"), ("v1", "Service", f"web-{canary}")} <= set(
        plan.remove
    )


def test_a_failing_report_rolls_the_candidate_back_with_its_reason() -> None:
    new, status, stable, canary = _start()
    failed = {
        **PASSED,
        "verdict": "Failed",
        "reason": "labels: 94.9% agreement beyond a 0.0% noise floor is below 98.0%",
    }
    plan = planner.plan(
        observe(
            new,
            status,
            {stable: 4, canary: 1},
            validators=(ValidatorView(canary, ready=True, report=failed),),
        )
    )
    assert plan.status["phase"] == "Degraded"
    assert plan.status["abortedRevision"] == canary
    assert plan.status["validation"]["phase"] == "Failed"
    assert plan.outcomes == ["aborted"]
    (event,) = [e for e in plan.events if e.reason == "ValidationFailed"]
    assert "94.9% agreement" in event.message
    assert ("batch/v1", "Job", f"web-{canary}") in plan.remove


def test_a_validator_that_ends_without_a_report_fails_the_stage() -> None:
    new, status, stable, canary = _start()
    broken = ValidatorView(canary, ready=False, failure="replay: line 3: not JSON")
    plan = planner.plan(observe(new, status, {stable: 4, canary: 1}, validators=(broken,)))
    assert plan.status["validation"]["reason"] == "the validator failed: replay: line 3: not JSON"
    assert plan.status["phase"] == "Degraded"


def test_a_stage_past_its_timeout_fails_and_promote_skips_it() -> None:
    new, status, stable, canary = _start()
    waiting = planner.plan(observe(new, status, {stable: 4, canary: 1}))
    assert waiting.requeue_after is not None
    late = NOW + dt.timedelta(minutes=10, seconds=validator.START_ALLOWANCE)
    expired = planner.plan(observe(new, status, {stable: 4, canary: 1}, now=late))
    assert expired.status["phase"] == "Degraded"
    assert "validation.timeout (10m)" in expired.status["validation"]["reason"]
    skipped = planner.plan(
        observe(new, status, {stable: 4, canary: 1}, annotations={"stratus.dev/promote": "1"})
    )
    assert skipped.status["validation"]["phase"] == "Passed"
    assert skipped.status["validation"]["reason"] == "skipped by a person (stratus promote)"
    assert skipped.status["canaryWeight"] == 20


def test_the_validator_job_runs_restricted_with_credentials_from_the_secret_only() -> None:
    s = spec(
        "serve:2",
        validation={
            **VALIDATION,
            "replay": {"configMap": {"name": "recorded", "key": "requests.jsonl"}},
            "baseline": {
                "url": "https://onprem.example/predict",
                "credentialsSecret": "onprem",
                "caConfigMap": "onprem-ca",
            },
        },
    )
    job = validator.build_job(OWNER, s, "abc", "img", "http://c:80", "http://s:80")
    pod = job["spec"]["template"]["spec"]
    assert job["metadata"]["labels"]["stratus.dev/validates"] == "web"
    assert "stratus.dev/inferenceservice" not in job["metadata"]["labels"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    validate, relay = pod["containers"]
    assert all(c["securityContext"]["capabilities"]["drop"] == ["ALL"] for c in (validate, relay))
    secret_refs = [e for e in validate["env"] if "valueFrom" in e]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in secret_refs} == {"onprem"}
    assert {e["valueFrom"]["secretKeyRef"]["key"] for e in secret_refs} == {
        "token",
        "username",
        "password",
    }
    assert all(e["valueFrom"]["secretKeyRef"]["optional"] for e in secret_refs)
    assert not any("valueFrom" in e for e in relay.get("env", []))
    env = {e["name"]: e.get("value") for e in validate["env"]}
    assert env["STRATUS_REQUESTS"] == "/var/run/stratus/requests/requests.jsonl"
    assert env["STRATUS_BASELINE_CA"] == "/etc/stratus/baseline-ca/ca.crt"
    assert {v["name"] for v in pod["volumes"]} == {
        "stratus-report",
        "stratus-requests",
        "stratus-baseline-ca",
    }
    assert relay["command"][-4:] == [
        "--report",
        validator.REPORT_FILE,
        "--to",
        "/dev/termination-log",
    ]


def test_a_replay_from_object_storage_is_fetched_by_an_init_container() -> None:
    s = spec(
        "serve:2",
        validation={
            **VALIDATION,
            "replay": {"uri": "s3://bucket/sets/day1.jsonl", "sha256": "a" * 64},
        },
    )
    job = validator.build_job(OWNER, s, "abc", "img", "http://c:80", "http://s:80")
    pod = job["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    assert fetch["command"][:4] == ["python", "-m", "stratus.storage", "fetch"]
    assert "--sha256" in fetch["command"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["STRATUS_REQUESTS"] == "/var/run/stratus/requests/day1.jsonl"


def _pod(containers: list[dict[str, Any]], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"stratus.dev/revision": "abc"}},
        "status": {"containerStatuses": containers, **status},
    }


def test_the_report_is_read_from_the_relay_containers_termination_message() -> None:
    done = {"state": {"terminated": {"exitCode": 0, "message": json.dumps(PASSED)}}}
    view = validator_view(_pod([{"name": "validate", "ready": True}, {"name": "report", **done}]))
    assert view == ValidatorView("abc", ready=True, report=PASSED, failure=None)
    crashed = {"state": {"terminated": {"exitCode": 1, "message": "Traceback\nValueError: bad"}}}
    view = validator_view(_pod([{"name": "validate", **crashed}, {"name": "report"}]))
    assert (view.report, view.failure) == (None, "ValueError: bad")
    fetch = {
        "name": "fetch-requests",
        "state": {"terminated": {"exitCode": 1, "message": "sha256 mismatch"}},
    }
    view = validator_view(_pod([], initContainerStatuses=[fetch]))
    assert view.failure == "fetching the request set: sha256 mismatch"


def test_a_report_is_checked_like_input_before_it_reaches_the_status() -> None:
    into: dict[str, Any] = {}
    validator.record(
        into,
        {
            "reason": "x" * 5000,
            "results": [
                {"name": "labels", "source": "shadow", "verdict": "Passed", "samples": True},
                {"name": "n", "source": "elsewhere", "verdict": "Passed"},
                "not a result",
            ],
            "shadowOverheadMs": {"p50": 1, "p99": "slow", "other": 3},
            "examples": [{"detail": "d"}] * 20,
        },
    )
    assert len(into["reason"]) <= validator.MAX_REASON
    assert into["results"] == [{"name": "labels", "source": "shadow", "verdict": "Passed"}]
    assert into["shadowOverheadMs"] == {"p50": 1.0}
    assert len(into["examples"]) == validator.MAX_EXAMPLES
