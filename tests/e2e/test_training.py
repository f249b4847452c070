"""TrainingJob end to end: the operator runs as its own process against the local control plane,
kwok plays the workload, and spot reclaims happen the way a cloud does them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from stratus.api.common import GROUP, VERSION
from stratus.devcluster import kubeapi
from tests.builders import TrainingJobBuilder
from tests.conftest import Cluster, OperatorProcess
from tests.support import Recorder, wait_for

pytestmark = pytest.mark.usefixtures("operator")
Obj = dict[str, Any]


class Env:
    """One test's view of the cluster, in its own namespace."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.ns = namespace
        self.custom = client.CustomObjectsApi(cluster.api)
        self.core = client.CoreV1Api(cluster.api)
        self.batch = client.BatchV1Api(cluster.api)

    def create(self, builder: TrainingJobBuilder) -> Obj:
        obj: Obj = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, "trainingjobs", builder.build()
        )
        return obj

    def get(self, name: str) -> Obj:
        obj: Obj = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, "trainingjobs", name
        )
        return obj

    def patch_spec(self, name: str, spec: Obj) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, "trainingjobs", name, {"spec": spec}
        )

    def wait(self, name: str, what: str, check: Callable[[Obj], bool], timeout: float = 60) -> Obj:
        def probe() -> Obj | None:
            obj = self.get(name)
            return obj if check(obj.get("status") or {}) else None

        return wait_for(f"{name}: {what}", probe, timeout=timeout)

    def jobs(self, name: str) -> list[Any]:
        return list(
            self.batch.list_namespaced_job(
                self.ns, label_selector=f"stratus.dev/trainingjob={name}"
            ).items
        )

    def pods(self, name: str, attempt: int | None = None) -> list[Any]:
        selector = f"stratus.dev/trainingjob={name}"
        if attempt is not None:
            selector += f",stratus.dev/attempt={attempt}"
        return list(self.core.list_namespaced_pod(self.ns, label_selector=selector).items)

    def running_pods(self, name: str, attempt: int, count: int = 1) -> list[Any]:
        return wait_for(
            f"{count} running pod(s) of {name} attempt {attempt}",
            lambda: (
                pods
                if len(pods := [p for p in self.pods(name, attempt) if p.status.phase == "Running"])
                >= count
                else None
            ),
        )

    def events(self, name: str) -> list[Any]:
        return list(
            self.core.list_namespaced_event(
                self.ns, field_selector=f"involvedObject.name={name}"
            ).items
        )

    def preempt(self, node: str) -> None:
        kubeapi.connect(self.cluster.kubeconfig).preempt(node, replace=True)


@pytest.fixture
def env(cluster: Cluster, namespace: str) -> Env:
    return Env(cluster, namespace)


def env_of(job: Any) -> dict[str, str]:
    container = job.spec.template.spec.containers[0]
    return {e.name: e.value for e in container.env if e.value is not None}


def test_single_gpu_spot_job_succeeds_and_records_its_checkpoint(env: Env) -> None:
    env.create(
        TrainingJobBuilder("ok")
        .spot()
        .team("nlp")
        .runs_for("2s")
        .reports("/checkpoints/step-50", 50)
    )
    obj = env.wait("ok", "Succeeded", lambda s: s.get("phase") == "Succeeded")
    status = obj["status"]
    assert (status["attempt"], status["preemptions"], status["restarts"]) == (1, 0, 0)
    assert status["lastCheckpoint"]["path"] == "/checkpoints/step-50"
    assert status["gpuSeconds"] >= 1
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    complete = {c["type"]: c for c in status["conditions"]}["Complete"]
    assert complete["status"] == "True"
    (job,) = env.jobs("ok")
    assert job.metadata.name == "ok-1"
    assert job.metadata.labels["stratus.dev/team"] == "nlp"
    assert job.metadata.owner_references[0].kind == "TrainingJob"
    (pod,) = env.pods("ok")
    node = env.core.read_node(pod.spec.node_name)
    assert node.metadata.labels["karpenter.sh/capacity-type"] == "spot"
    assert env_of(job)["STRATUS_ATTEMPT"] == "1"
    assert "STRATUS_RESUME_FROM" not in env_of(job)
    # Events follow the status write that they describe.
    wait_for(
        "the AttemptStarted and Succeeded events",
        lambda: {"AttemptStarted", "Succeeded"} <= {e.reason for e in env.events("ok")},
    )


def test_preemption_resumes_from_the_reported_checkpoint(env: Env) -> None:
    env.create(
        TrainingJobBuilder("pre").spot().runs_for("10m").reports("/checkpoints/step-100", 100)
    )
    (pod,) = env.running_pods("pre", 1)
    env.preempt(pod.spec.node_name)
    obj = env.wait("pre", "attempt 2", lambda s: s.get("attempt") == 2 and bool(s.get("activeJob")))
    assert (obj["status"]["preemptions"], obj["status"]["restarts"]) == (1, 0)
    assert obj["status"]["lastCheckpoint"]["step"] == 100
    job = wait_for(
        "Job pre-2", lambda: next((j for j in env.jobs("pre") if j.metadata.name == "pre-2"), None)
    )
    assert env_of(job)["STRATUS_RESUME_FROM"] == "/checkpoints/step-100"
    assert env_of(job)["STRATUS_ATTEMPT"] == "2"
    env.running_pods("pre", 2)
    env.wait("pre", "Running again", lambda s: s.get("phase") == "Running")
    wait_for(
        "the Preempted and Resumed events",
        lambda: {"Preempted", "Resumed"} <= {e.reason for e in env.events("pre")},
    )
    wait_for(
        "the old attempt's Job deleted",
        lambda: [j.metadata.name for j in env.jobs("pre")] == ["pre-2"],
    )


def test_falls_back_to_on_demand_after_n_preemptions(env: Env) -> None:
    env.create(TrainingJobBuilder("fb").spot(max_preemptions=5, fallback_after=1).runs_for("10m"))
    (pod,) = env.running_pods("fb", 1)
    env.preempt(pod.spec.node_name)
    (pod,) = env.running_pods("fb", 2)
    node = env.core.read_node(pod.spec.node_name)
    assert node.metadata.labels["karpenter.sh/capacity-type"] == "on-demand"
    assert env.get("fb")["status"]["preemptions"] == 1
    # Events follow the status write that they describe.
    wait_for(
        "the second attempt's AttemptStarted event",
        lambda: (
            "attempt 2 started on on-demand capacity"
            in [e.message for e in env.events("fb") if e.reason == "AttemptStarted"]
        ),
    )


def test_fails_once_max_preemptions_is_exhausted(env: Env) -> None:
    env.create(TrainingJobBuilder("mp").spot(max_preemptions=1).runs_for("10m"))
    for attempt in (1, 2):
        (pod,) = env.running_pods("mp", attempt)
        env.preempt(pod.spec.node_name)
    obj = env.wait("mp", "Failed", lambda s: s.get("phase") == "Failed")
    failed = {c["type"]: c for c in obj["status"]["conditions"]}["Failed"]
    assert failed["reason"] == "PreemptionLimitExceeded"
    assert obj["status"]["preemptions"] == 2
    wait_for(
        "no pod left running",
        lambda: not [p for p in env.pods("mp") if p.status.phase in ("Pending", "Running")],
    )


def test_counted_failures_fail_with_the_exit_code_and_message(env: Env) -> None:
    env.create(
        TrainingJobBuilder("crash")
        .retry(max_restarts=1)
        .runs_for("200ms")
        .exits_with(3)
        .message("CUDA error: out of memory")
    )
    obj = env.wait("crash", "Failed", lambda s: s.get("phase") == "Failed")
    status = obj["status"]
    assert (status["attempt"], status["restarts"], status["preemptions"]) == (2, 2, 0)
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["reason"] == "RestartLimitExceeded"
    assert "exit code 3" in failed["message"]
    assert "CUDA error: out of memory" in failed["message"]
    wait_for(
        "a Failed event naming exit code 3",
        lambda: any(
            "exit code 3" in e.message for e in env.events("crash") if e.reason == "Failed"
        ),
    )


def test_retryable_exit_codes_restart_without_counting(env: Env) -> None:
    env.create(
        TrainingJobBuilder("flaky")
        .retry(max_restarts=0, retryable=[75])
        .runs_for("200ms")
        .exits_with(75)
    )
    obj = env.wait("flaky", "a third attempt", lambda s: s.get("attempt", 0) >= 3)
    assert obj["status"]["restarts"] == 0
    assert obj["status"]["retryableRestarts"] >= 2
    assert obj["status"]["phase"] != "Failed"
    wait_for(
        "an event naming retryable exit code 75",
        lambda: any("retryable exit code 75" in e.message for e in env.events("flaky")),
    )


def test_retryable_exits_fail_past_their_own_limit(env: Env) -> None:
    env.create(
        TrainingJobBuilder("flakier")
        .retry(max_restarts=5, retryable=[75], max_retryable=1)
        .runs_for("200ms")
        .exits_with(75)
    )
    obj = env.wait("flakier", "Failed", lambda s: s.get("phase") == "Failed")
    status = obj["status"]
    assert (status["attempt"], status["retryableRestarts"], status["restarts"]) == (2, 2, 0)
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["reason"] == "RetryableRestartLimitExceeded"


def test_the_attempt_after_a_failed_one_waits_out_the_backoff(env: Env) -> None:
    env.create(
        TrainingJobBuilder("patient")
        .retry(max_restarts=3)
        .backoff(4, 8)
        .runs_for("200ms")
        .exits_with(3)
    )
    obj = env.wait("patient", "backing off", lambda s: bool(s.get("nextAttemptAt")), timeout=30)
    due = dt.datetime.fromisoformat(obj["status"]["nextAttemptAt"].replace("Z", "+00:00"))
    ready = {c["type"]: c for c in obj["status"]["conditions"]}["Ready"]
    assert (obj["status"]["phase"], ready["reason"]) == ("Restarting", "BackingOff")
    assert obj["status"]["nextAttemptAt"] in ready["message"]
    assert [j.metadata.name for j in env.jobs("patient")] == ["patient-1"]
    second = wait_for(
        "the second attempt's Job",
        lambda: next((j for j in env.jobs("patient") if j.metadata.name == "patient-2"), None),
        timeout=30,
    )
    # Timestamps are whole seconds: the Job is made no earlier than the second it was due.
    assert second.metadata.creation_timestamp >= due
    obj = env.wait("patient", "the second attempt failed", lambda s: s.get("restarts") == 2)
    # The wait doubles: 4s, then 8s.
    due_again = dt.datetime.fromisoformat(obj["status"]["nextAttemptAt"].replace("Z", "+00:00"))
    assert due_again - second.metadata.creation_timestamp >= dt.timedelta(seconds=7)


def test_gpu_seconds_count_from_when_containers_run(env: Env) -> None:
    env.create(TrainingJobBuilder("metered").gpus(2).starts_after("5s").runs_for("2s"))
    obj = env.wait("metered", "Succeeded", lambda s: s.get("phase") == "Succeeded")
    # 2 GPUs for about 2 s of running (whole seconds, a loaded machine), not the 7 s and more
    # since the Job was made.
    assert 2 <= obj["status"]["gpuSeconds"] <= 10


def test_preempting_one_worker_restarts_all_workers_as_one_attempt(env: Env) -> None:
    env.create(TrainingJobBuilder("dist").spot().workers(4).gpus(2).runs_for("10m"))
    pods = env.running_pods("dist", 1, count=4)
    service = env.core.read_namespaced_service("dist", env.ns)
    assert service.spec.cluster_ip == "None"
    (job,) = env.jobs("dist")
    variables = env_of(job)
    assert variables["MASTER_ADDR"] == "dist-1-0.dist"
    assert variables["WORLD_SIZE"] == "4"
    recorder = Recorder(
        env.core.list_namespaced_pod, env.ns, label_selector="stratus.dev/trainingjob=dist"
    )
    env.preempt(pods[0].spec.node_name)
    env.running_pods("dist", 2, count=4)
    seen = recorder.stop()
    assert env.get("dist")["status"]["preemptions"] == 1
    # No pod of attempt 2 existed while any pod of attempt 1 still ran.
    alive: set[str] = set()
    for pod in seen:
        attempt = pod.metadata.labels["stratus.dev/attempt"]
        terminal = pod.status.phase in ("Succeeded", "Failed")
        if attempt == "1":
            (alive.discard if terminal else alive.add)(pod.metadata.name)
        else:
            assert not alive, f"{pod.metadata.name} created while {alive} still ran"
    assert {
        p.metadata.labels["stratus.dev/attempt"]
        for p in env.pods("dist")
        if p.status.phase == "Running"
    } == {"2"}


def test_operator_killed_mid_run_makes_no_duplicate(env: Env, operator: OperatorProcess) -> None:
    env.create(TrainingJobBuilder("restart").spot().runs_for("10m"))
    (pod,) = env.running_pods("restart", 1)
    operator.kill()
    env.preempt(pod.spec.node_name)
    operator.start()
    obj = env.wait(
        "restart",
        "attempt 2 running",
        lambda s: s.get("attempt") == 2 and s.get("phase") == "Running",
    )
    assert obj["status"]["preemptions"] == 1
    names = sorted(j.metadata.name for j in env.jobs("restart"))
    assert names in (["restart-2"], ["restart-1", "restart-2"])
    assert len(env.running_pods("restart", 2)) == 1


def test_deleting_the_trainingjob_removes_every_child(env: Env) -> None:
    env.create(TrainingJobBuilder("gone").spot().workers(2).runs_for("10m"))
    env.running_pods("gone", 1, count=2)
    env.custom.delete_namespaced_custom_object(GROUP, VERSION, env.ns, "trainingjobs", "gone")
    wait_for(
        "Jobs, pods and Service collected",
        lambda: (
            not env.jobs("gone")
            and not env.pods("gone")
            and not env.core.list_namespaced_service(env.ns).items
        ),
    )


def test_suspend_stops_the_attempt_uncounted_and_resume_starts_the_next(env: Env) -> None:
    env.create(TrainingJobBuilder("pause").spot().runs_for("10m").reports("/checkpoints/step-7", 7))
    env.running_pods("pause", 1)
    env.patch_spec("pause", {"suspend": True})
    obj = env.wait("pause", "Suspended", lambda s: s.get("phase") == "Suspended")
    wait_for(
        "attempt 1 stopped",
        lambda: not [p for p in env.pods("pause") if p.status.phase == "Running"],
    )
    assert (obj["status"]["preemptions"], obj["status"]["restarts"]) == (0, 0)
    env.patch_spec("pause", {"suspend": False})
    env.running_pods("pause", 2)
    job = next(j for j in env.jobs("pause") if j.metadata.name == "pause-2")
    assert env_of(job)["STRATUS_RESUME_FROM"] == "/checkpoints/step-7"
    status = env.get("pause")["status"]
    assert (status["preemptions"], status["restarts"]) == (0, 0)


def test_too_many_gpus_reports_why_it_waits(env: Env) -> None:
    env.create(TrainingJobBuilder("huge").gpus(9))
    obj = env.wait(
        "huge",
        "Scheduled=False",
        lambda s: any(
            c["type"] == "Scheduled" and c["reason"] == "Unschedulable"
            for c in s.get("conditions", [])
        ),
    )
    scheduled = {c["type"]: c for c in obj["status"]["conditions"]}["Scheduled"]
    assert "Insufficient nvidia.com/gpu" in scheduled["message"]
    assert obj["status"]["phase"] == "Pending"


def test_a_refused_job_is_reported_and_created_once_allowed(env: Env) -> None:
    quota = {"metadata": {"name": "no-jobs"}, "spec": {"hard": {"count/jobs.batch": "0"}}}
    env.core.create_namespaced_resource_quota(env.ns, quota)
    wait_for(
        "the quota to be in force",
        lambda: env.core.read_namespaced_resource_quota("no-jobs", env.ns).status.hard or None,
    )
    env.create(TrainingJobBuilder("refused").runs_for("1s"))
    obj = env.wait(
        "refused",
        "Ready=False CreateFailed",
        lambda s: any(c["reason"] == "CreateFailed" for c in s.get("conditions", [])),
    )
    ready = {c["type"]: c for c in obj["status"]["conditions"]}["Ready"]
    assert "Job refused-1" in ready["message"]
    assert "exceeded quota: no-jobs" in ready["message"]
    assert env.jobs("refused") == []
    wait_for(
        "a CreateFailed event", lambda: "CreateFailed" in {e.reason for e in env.events("refused")}
    )
    env.core.delete_namespaced_resource_quota("no-jobs", env.ns)
    env.wait("refused", "Succeeded", lambda s: s.get("phase") == "Succeeded", timeout=90)
    assert [j.metadata.name for j in env.jobs("refused")] == ["refused-1"]


def test_metrics_count_what_happened(env: Env, operator: OperatorProcess) -> None:
    env.create(TrainingJobBuilder("m").team("nlp").runs_for("100ms"))
    env.create(TrainingJobBuilder("m2").team("unlisted-team").runs_for("100ms"))
    for name in ("m", "m2"):
        env.wait(name, "Succeeded", lambda s: s.get("phase") == "Succeeded")
    # The phase gauge counts the operator's cache, which its own status write reaches a moment
    # after the API server does.
    text = wait_for(
        "the Succeeded phase counted",
        lambda: t if 'stratus_trainingjobs{phase="Succeeded"}' in (t := operator.metrics()) else "",
    )
    # nlp is in the operator's team list (STRATUS_TEAMS); any other team is counted as other.
    assert 'stratus_training_attempts_total{team="nlp"}' in text
    assert 'stratus_training_attempts_total{team="other"}' in text
    assert "unlisted-team" not in text
    assert "stratus_reconcile_duration_seconds_bucket" in text
