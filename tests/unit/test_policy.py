"""The workload policy, field by field: what baseline and restricted refuse (naming the field),
what they let through, the opt-out, the admin's settings, and the status a refusal shows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from stratus import config, policy
from stratus.api.common import Workload
from stratus.api.inferenceservice import InferenceServiceSpec
from stratus.api.trainingjob import TrainingJobSpec
from stratus.policy import Level, WorkloadPolicy
from tests.cases import all_examples

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
Obj = dict[str, Any]


def workload(pod: Obj | None = None, **fields: Any) -> TrainingJobSpec:
    raw: Obj = {"image": "train:1", **fields}
    if pod is not None:
        raw["podTemplate"] = {"spec": pod}
    return TrainingJobSpec.model_validate(raw)


def refused(spec: Workload, level: Level = "baseline", accounts: tuple[str, ...] = ()) -> list[str]:
    return [v.path for v in policy.check(spec, WorkloadPolicy(level, accounts))]


def container(**security: Any) -> Obj:
    return {"name": "train", "securityContext": security}


P = "spec.podTemplate.spec"
# Refused by baseline (and so by restricted), each naming the field.
BASELINE_REFUSES = [
    ({"hostNetwork": True}, f"{P}.hostNetwork"),
    ({"hostPID": True}, f"{P}.hostPID"),
    ({"hostIPC": True}, f"{P}.hostIPC"),
    ({"serviceAccountName": "ci-admin"}, f"{P}.serviceAccountName"),
    ({"serviceAccount": "ci-admin"}, f"{P}.serviceAccount"),
    ({"containers": [container(privileged=True)]}, f"{P}.containers[0].securityContext.privileged"),
    (
        {"initContainers": [{"name": "setup", "securityContext": {"privileged": True}}]},
        f"{P}.initContainers[0].securityContext.privileged",
    ),
    (
        {
            "containers": [
                {"name": "x"},
                container(capabilities={"add": ["NET_BIND_SERVICE", "SYS_ADMIN"]}),
            ]
        },
        f"{P}.containers[1].securityContext.capabilities.add[1]",
    ),
    (
        {"containers": [container(capabilities={"add": ["NET_ADMIN"]})]},
        f"{P}.containers[0].securityContext.capabilities.add[0]",
    ),
    ({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}, f"{P}.volumes[0].hostPath"),
    (
        {"containers": [{"name": "train", "ports": [{"containerPort": 80, "hostPort": 80}]}]},
        f"{P}.containers[0].ports[0].hostPort",
    ),
    (
        {"securityContext": {"seccompProfile": {"type": "Unconfined"}}},
        f"{P}.securityContext.seccompProfile.type",
    ),
    (
        {"containers": [container(appArmorProfile={"type": "Unconfined"})]},
        f"{P}.containers[0].securityContext.appArmorProfile.type",
    ),
    (
        {"securityContext": {"seLinuxOptions": {"type": "spc_t"}}},
        f"{P}.securityContext.seLinuxOptions.type",
    ),
    (
        {"securityContext": {"seLinuxOptions": {"user": "system_u"}}},
        f"{P}.securityContext.seLinuxOptions.user",
    ),
    (
        {"containers": [container(procMount="Unmasked")]},
        f"{P}.containers[0].securityContext.procMount",
    ),
    (
        {"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}},
        f"{P}.securityContext.sysctls[0]",
    ),
    (
        {"securityContext": {"windowsOptions": {"hostProcess": True}}},
        f"{P}.securityContext.windowsOptions.hostProcess",
    ),
]


@pytest.mark.parametrize(("pod", "path"), BASELINE_REFUSES, ids=lambda x: str(x)[:60])
@pytest.mark.parametrize("level", ["baseline", "restricted"])
def test_baseline_refuses_host_access_and_privileges_naming_the_field(
    pod: Obj, path: str, level: Level
) -> None:
    assert refused(workload(pod), level) == [path]
    assert refused(workload(pod), "none") == []


def test_a_host_path_among_the_resources_own_volumes_is_refused() -> None:
    spec = workload(volumes=[{"name": "data", "emptyDir": {}}, {"name": "h", "hostPath": {}}])
    assert refused(spec) == ["spec.volumes[1].hostPath"]


def test_an_unconfined_apparmor_annotation_is_refused() -> None:
    key = "container.apparmor.security.beta.kubernetes.io/train"
    spec = TrainingJobSpec.model_validate(
        {"image": "t", "podTemplate": {"metadata": {"annotations": {key: "unconfined"}}}}
    )
    assert refused(spec) == [f"spec.podTemplate.metadata.annotations[{key}]"]
    fine = {key: "runtime/default", "other": "unconfined"}
    spec = TrainingJobSpec.model_validate(
        {"image": "t", "podTemplate": {"metadata": {"annotations": fine}}}
    )
    assert refused(spec) == []


# Allowed by baseline, refused by restricted.
RESTRICTED_REFUSES = [
    ({"securityContext": {"runAsUser": 0}}, f"{P}.securityContext.runAsUser"),
    ({"securityContext": {"runAsNonRoot": False}}, f"{P}.securityContext.runAsNonRoot"),
    (
        {"containers": [container(runAsNonRoot=False)]},
        f"{P}.containers[0].securityContext.runAsNonRoot",
    ),
    (
        {"containers": [container(allowPrivilegeEscalation=True)]},
        f"{P}.containers[0].securityContext.allowPrivilegeEscalation",
    ),
    (
        {"containers": [container(capabilities={"add": ["CHOWN"]})]},
        f"{P}.containers[0].securityContext.capabilities.add[0]",
    ),
    (
        {"containers": [container(seccompProfile={"type": "Something"})]},
        f"{P}.containers[0].securityContext.seccompProfile.type",
    ),
    ({"volumes": [{"name": "n", "nfs": {"server": "s", "path": "/"}}]}, f"{P}.volumes[0].nfs"),
]


@pytest.mark.parametrize(("pod", "path"), RESTRICTED_REFUSES, ids=lambda x: str(x)[:60])
def test_restricted_also_refuses_root_escalation_and_other_volume_types(
    pod: Obj, path: str
) -> None:
    assert refused(workload(pod), "baseline") == []
    assert refused(workload(pod), "restricted") == [path]


ALWAYS_ALLOWED = [
    {"serviceAccountName": "default"},
    {"containers": [container(capabilities={"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]})]},
    {"containers": [container(runAsUser=1000, runAsNonRoot=True)]},
    {"securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}},
    {"securityContext": {"sysctls": [{"name": "net.ipv4.tcp_keepalive_time", "value": "60"}]}},
    {"securityContext": {"seLinuxOptions": {"type": "container_t", "level": "s0:c1"}}},
    {"hostNetwork": False, "tolerations": [{"key": "x", "operator": "Exists"}]},
    {
        "volumes": [
            {"name": "s", "secret": {"secretName": "hf-token"}},
            {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "p", "projected": {"sources": []}},
        ]
    },
]


@pytest.mark.parametrize("pod", ALWAYS_ALLOWED, ids=lambda x: str(x)[:60])
@pytest.mark.parametrize("level", ["baseline", "restricted"])
def test_what_restricted_pods_may_do_passes_both(pod: Obj, level: Level) -> None:
    assert refused(workload(pod), level) == []


def test_secrets_of_the_namespace_may_be_referenced() -> None:
    """Anyone who may create pods in a namespace may mount its Secrets; the README's security
    model says why a resource may do the same."""
    spec = workload(
        env=[{"name": "T", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}],
        envFrom=[{"secretRef": {"name": "s3-credentials"}}],
        volumes=[{"name": "s", "secret": {"secretName": "hf-token"}}],
    )
    assert refused(spec, "restricted") == []


def test_the_admin_may_allow_service_accounts() -> None:
    spec = workload({"serviceAccountName": "model-reader"})
    assert refused(spec, "baseline", ("model-reader",)) == []
    assert refused(spec, "baseline", ("other",)) == [f"{P}.serviceAccountName"]
    (violation,) = policy.check(spec, WorkloadPolicy("baseline", ("other",)))
    assert "'model-reader'" in violation.message
    assert "default, other" in violation.message


def test_every_violation_is_named_and_the_message_says_which_policy() -> None:
    spec = workload(
        {"hostNetwork": True, "hostPID": True, "containers": [container(privileged=True)]},
        volumes=[{"name": "h", "hostPath": {"path": "/"}}],
    )
    found = policy.check(spec, WorkloadPolicy("restricted"))
    assert [v.path for v in found] == [
        "spec.volumes[0].hostPath",
        f"{P}.hostNetwork",
        f"{P}.hostPID",
        f"{P}.containers[0].securityContext.privileged",
    ]
    assert str(found[1]) == (
        f"{P}.hostNetwork: shares the node's network namespace: not allowed by the workload "
        "policy (baseline)"
    )
    text = policy.describe(found)
    assert text.startswith("spec.volumes[0].hostPath: ")
    assert text.endswith("; and 1 more")
    assert "privileged" not in text


def test_inference_services_are_judged_the_same() -> None:
    spec = InferenceServiceSpec.model_validate(
        {
            "image": "serve:1",
            "model": {"uri": "https://models.example.com/m.bin"},
            "podTemplate": {"spec": {"hostIPC": True}},
        }
    )
    assert refused(spec) == [f"{P}.hostIPC"]


@pytest.mark.parametrize("obj", all_examples(), ids=lambda o: o["metadata"]["name"])
@pytest.mark.parametrize("level", ["baseline", "restricted"])
def test_the_examples_pass_the_strictest_policy(obj: Obj, level: Level) -> None:
    model = TrainingJobSpec if obj["kind"] == "TrainingJob" else InferenceServiceSpec
    assert refused(model.model_validate(obj["spec"]), level) == []


def test_a_refusal_is_shown_once_and_posted_once() -> None:
    violations = policy.check(workload({"hostNetwork": True}), WorkloadPolicy())
    status, events = policy.refused({}, violations, "Ready", NOW, 3)
    (condition,) = status["conditions"]
    assert (condition["status"], condition["reason"]) == ("False", "PolicyViolation")
    assert condition["message"].startswith(f"{P}.hostNetwork: ")
    assert condition["observedGeneration"] == 3
    assert [(e.type, e.reason, e.message) for e in events] == [
        ("Warning", "PolicyViolation", condition["message"])
    ]
    later = NOW + dt.timedelta(minutes=5)
    again, repeated = policy.refused(status, violations, "Ready", later, 3)
    assert again == status
    assert repeated == []
    other = policy.check(workload({"hostPID": True}), WorkloadPolicy())
    _, changed = policy.refused(status, other, "Ready", later, 4)
    assert [e.reason for e in changed] == ["PolicyViolation"]


def test_the_admin_chooses_the_policy() -> None:
    assert config.from_env({}).workload_policy == WorkloadPolicy("baseline", ())
    chosen = config.from_env(
        {
            "STRATUS_WORKLOAD_POLICY": "restricted",
            "STRATUS_ALLOWED_SERVICE_ACCOUNTS": " model-reader, trainer ,",
        }
    ).workload_policy
    assert chosen == WorkloadPolicy("restricted", ("model-reader", "trainer"))
    assert config.from_env({"STRATUS_WORKLOAD_POLICY": "none"}).workload_policy.level == "none"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STRATUS_WORKLOAD_POLICY", "privileged"),
        ("STRATUS_ALLOWED_SERVICE_ACCOUNTS", "Model_Reader"),
    ],
)
def test_a_wrong_policy_setting_stops_the_operator_naming_it(name: str, value: str) -> None:
    with pytest.raises(config.ConfigError, match=f"^{name}: '{value}'"):
        config.from_env({name: value})
