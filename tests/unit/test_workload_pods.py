"""The pods the operator generates: placement that only narrows, for each spot preset (judged by a
small model of the scheduler's node filter), and the restricted Pod Security profile with
resource requests, for both kinds, their init containers and a user's sidecars."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from stratus import policy
from stratus.api.inferenceservice import InferenceServiceSpec
from stratus.api.trainingjob import TrainingJobSpec
from stratus.config import SPOT_PRESETS, CapacityConvention
from stratus.devcluster import nodepools
from stratus.podspec import Owner
from stratus.serving import builders as serving
from stratus.training import builders as training

Obj = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
H100 = "NVIDIA-H100-80GB-HBM3"
ZONE = "topology.kubernetes.io/zone"
TJ_OWNER = Owner("TrainingJob", "gpt", "ml", "uid-1")
INFS_OWNER = Owner("InferenceService", "web", "ml", "uid-2")
# What each preset's on-demand nodes carry on the capacity label (None: no such label).
ON_DEMAND_VALUE = {"karpenter": "on-demand", "gke": None, "eks": "ON_DEMAND", "aks": None}


# -- a model of the scheduler's node filter ---------------------------------------------------


def _expression_holds(expr: Obj, labels: dict[str, str]) -> bool:
    key, operator, values = expr["key"], expr["operator"], expr.get("values", [])
    if operator == "In":
        return labels.get(key) in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    assert operator == "DoesNotExist", operator
    return key not in labels


def _term_holds(term: Obj, node: Obj) -> bool:
    labels = node["metadata"]["labels"]
    fields = {"metadata.name": node["metadata"]["name"]}
    return all(_expression_holds(e, labels) for e in term.get("matchExpressions", [])) and all(
        _expression_holds(e, fields) for e in term.get("matchFields", [])
    )


def _tolerated(taint: Obj, tolerations: list[Obj]) -> bool:
    return any(
        t.get("key") in (None, taint["key"])
        and t.get("effect") in (None, taint["effect"])
        and (t.get("operator") == "Exists" or t.get("value", "") == taint.get("value", ""))
        for t in tolerations
    )


def schedulable(pod: Obj, node: Obj) -> bool:
    """Whether the scheduler's filter lets `pod` onto `node`: nodeSelector, required node
    affinity (terms OR-ed, expressions AND-ed) and NoSchedule/NoExecute taints."""
    labels = node["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in (pod.get("nodeSelector") or {}).items()):
        return False
    required = (
        pod.get("affinity", {})
        .get("nodeAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution")
    )
    if required is not None and not any(
        _term_holds(t, node) for t in required["nodeSelectorTerms"]
    ):
        return False
    return all(
        _tolerated(taint, pod.get("tolerations", []))
        for taint in node["spec"].get("taints", [])
        if taint["effect"] in ("NoSchedule", "NoExecute")
    )


def node(name: str, labels: dict[str, str], taints: list[Obj] | None = None) -> Obj:
    return {"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints or []}}


def cluster(preset: str) -> list[Obj]:
    """Spot and on-demand H100 nodes in two zones and a CPU node, marked as `preset` marks them;
    GPU nodes tainted as GKE and AKS taint them."""
    capacity = SPOT_PRESETS[preset]
    gpu_taint: Obj = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    spot_labels = {capacity.label: capacity.spot_value}
    spot_taints = [gpu_taint]
    if capacity.taint_key:
        spot_taints.append(
            {"key": capacity.taint_key, "value": capacity.taint_value, "effect": "NoSchedule"}
        )
    value = ON_DEMAND_VALUE[preset]
    on_demand = {capacity.label: value} if value else {}
    gpu = {"nvidia.com/gpu.product": H100}
    return [
        node("spot-a", {**gpu, ZONE: "a", **spot_labels}, spot_taints),
        node("ondemand-a", {**gpu, ZONE: "a", **on_demand}, [gpu_taint]),
        node("ondemand-b", {**gpu, ZONE: "b", **on_demand}, [gpu_taint]),
        node("cpu-a", {ZONE: "a", **on_demand}),
    ]


def zone_affinity(*zones: str) -> Obj:
    terms = [{"matchExpressions": [{"key": ZONE, "operator": "In", "values": [z]}]} for z in zones]
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
        }
    }


def training_pod(
    capacity: CapacityConvention, on_spot: bool, spot: bool | None = None, **fields: Any
) -> Obj:
    spec = TrainingJobSpec.model_validate(
        {
            "image": "train:1",
            "resources": {"gpu": 1, "gpuType": H100},
            "spot": {"enabled": on_spot if spot is None else spot},
            **fields,
        }
    )
    job = training.build_job(TJ_OWNER, spec, training.AttemptPlan(1, None, on_spot), capacity)
    pod: Obj = job["spec"]["template"]["spec"]
    return pod


def eligible(pod: Obj, nodes: list[Obj]) -> set[str]:
    return {n["metadata"]["name"] for n in nodes if schedulable(pod, n)}


# -- placement only narrows -------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(SPOT_PRESETS))
def test_an_attempt_not_on_spot_never_lands_on_spot_capacity(preset: str) -> None:
    capacity, nodes = SPOT_PRESETS[preset], cluster(preset)
    # Even where spot nodes carry no taint (eks), a rule keeps the attempt off them.
    assert eligible(training_pod(capacity, on_spot=False), nodes) == {"ondemand-a", "ondemand-b"}
    fallen_back = training_pod(capacity, on_spot=False, spot=True)
    assert eligible(fallen_back, nodes) == {"ondemand-a", "ondemand-b"}
    assert eligible(training_pod(capacity, on_spot=True), nodes) == {"spot-a"}
    terms = fallen_back["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    (term,) = terms["nodeSelectorTerms"]
    assert {"key": capacity.label, "operator": "NotIn", "values": [capacity.spot_value]} in term[
        "matchExpressions"
    ]


@pytest.mark.parametrize("preset", sorted(SPOT_PRESETS))
@pytest.mark.parametrize("on_spot", [False, True])
def test_a_users_affinity_narrows_every_generated_term(preset: str, on_spot: bool) -> None:
    capacity, nodes = SPOT_PRESETS[preset], cluster(preset)
    alone = eligible(training_pod(capacity, on_spot), nodes)
    pod = training_pod(capacity, on_spot, podTemplate={"spec": {"affinity": zone_affinity("a")}})
    # The reproduction: (H100 and capacity) or zone=a let a pod onto the CPU node in zone a.
    assert eligible(pod, nodes) == {n for n in alone if n.endswith("-a")}
    assert "cpu-a" not in eligible(pod, nodes)
    either = training_pod(
        capacity, on_spot, podTemplate={"spec": {"affinity": zone_affinity("a", "b")}}
    )
    assert eligible(either, nodes) == alone
    terms = either["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert len(terms) == 2
    for term in terms:
        assert {"key": "nvidia.com/gpu.product", "operator": "In", "values": [H100]} in term[
            "matchExpressions"
        ]


@pytest.mark.parametrize("preset", sorted(SPOT_PRESETS))
def test_a_users_node_selector_and_tolerations_only_narrow(preset: str) -> None:
    capacity, nodes = SPOT_PRESETS[preset], cluster(preset)
    spot_toleration = {"key": capacity.label, "operator": "Exists"}
    pod = training_pod(
        capacity,
        on_spot=False,
        podTemplate={"spec": {"nodeSelector": {ZONE: "a"}, "tolerations": [spot_toleration]}},
    )
    # Tolerating the spot taint does not put an on-demand attempt on spot: the rule still holds.
    assert eligible(pod, nodes) == {"ondemand-a"}


def test_match_fields_and_preferences_of_the_user_are_kept() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchFields": [
                            {"key": "metadata.name", "operator": "In", "values": ["ondemand-b"]}
                        ]
                    }
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 1,
                    "preference": {"matchExpressions": [{"key": "x", "operator": "Exists"}]},
                }
            ],
        }
    }
    pod = training_pod(SPOT_PRESETS["eks"], False, podTemplate={"spec": {"affinity": affinity}})
    assert eligible(pod, cluster("eks")) == {"ondemand-b"}
    node_affinity = pod["affinity"]["nodeAffinity"]
    assert node_affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 1


def test_on_the_local_clusters_pools_attempts_keep_to_their_capacity() -> None:
    nodes = nodepools.node_manifests(nodepools.DEFAULT_POOLS, beside_real=True)
    simulated = {"spec": copy.deepcopy(nodepools.SIMULATED_POD_SPEC)}
    pools = {n["metadata"]["name"]: n["metadata"]["labels"][nodepools.POOL_LABEL] for n in nodes}
    for on_spot, pool in ((False, "gpu-ondemand"), (True, "gpu-spot")):
        pod = training_pod(SPOT_PRESETS["karpenter"], on_spot, podTemplate=simulated)
        assert {pools[name] for name in eligible(pod, nodes)} == {pool}


def test_an_inference_services_affinity_is_anded_with_its_gpu_type() -> None:
    spec = InferenceServiceSpec.model_validate(
        {
            "image": "serve:1",
            "model": {"uri": "https://models.example.com/m.bin"},
            "resources": {"gpu": 1, "gpuType": H100},
            "podTemplate": {"spec": {"affinity": zone_affinity("a")}},
        }
    )
    pod = serving.build_deployment(INFS_OWNER, spec, "abc", 1, "stage:1")["spec"]["template"][
        "spec"
    ]
    assert eligible(pod, cluster("karpenter")) == {"ondemand-a"}


# -- the restricted profile and requests ------------------------------------------------------


def assert_restricted(pod: Obj) -> None:
    """What the restricted Pod Security profile requires to be set, and nothing it forbids."""
    context = pod["securityContext"]
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod.get("initContainers", []) + pod["containers"]:
        own = container["securityContext"]
        assert own["allowPrivilegeEscalation"] is False, container["name"]
        assert "ALL" in own["capabilities"]["drop"], container["name"]
        assert own.get("runAsNonRoot", context.get("runAsNonRoot")) is True, container["name"]
    fed_back = TrainingJobSpec.model_validate({"image": "x", "podTemplate": {"spec": pod}})
    assert policy.check(fed_back, policy.WorkloadPolicy("restricted")) == ()


def requests(container: Obj) -> dict[str, str]:
    found: dict[str, str] = container["resources"]["requests"]
    return found


@pytest.mark.parametrize("workers", [1, 4])
def test_training_pods_pass_restricted_and_carry_requests(workers: int) -> None:
    pod = training_pod(
        SPOT_PRESETS["karpenter"],
        on_spot=True,
        workers=workers,
        checkpoint={"persistentVolumeClaim": "ckpt"},
    )
    assert_restricted(pod)
    (train,) = pod["containers"]
    assert requests(train) == {"nvidia.com/gpu": "1", "cpu": "100m", "memory": "128Mi"}
    assert train["resources"]["limits"] == {"nvidia.com/gpu": "1"}


def test_named_cpu_and_memory_are_both_request_and_limit() -> None:
    pod = training_pod(
        SPOT_PRESETS["gke"], False, resources={"gpu": 2, "cpu": "8", "memory": "64Gi"}
    )
    amounts = {"nvidia.com/gpu": "2", "cpu": "8", "memory": "64Gi"}
    assert pod["containers"][0]["resources"] == {"requests": amounts, "limits": amounts}


@pytest.mark.parametrize(
    "model",
    [{"uri": "https://m.example.com/m.bin", "caConfigMap": "ca"}, {"uri": "pvc://models/m"}],
)
def test_serving_pods_and_the_staging_init_container_pass_restricted(model: Obj) -> None:
    spec = InferenceServiceSpec.model_validate({"image": "serve:1", "model": model})
    pod = serving.build_deployment(INFS_OWNER, spec, "abc", 1, "stage:1")["spec"]["template"][
        "spec"
    ]
    assert_restricted(pod)
    (init,) = pod["initContainers"]
    assert set(requests(init)) == {"cpu", "memory"}
    assert set(init["resources"]["limits"]) == {"memory"}
    assert set(requests(pod["containers"][0])) >= {"cpu", "memory"}


def test_a_users_sidecar_gets_the_restricted_defaults_and_keeps_its_own_settings() -> None:
    pod = training_pod(
        SPOT_PRESETS["karpenter"],
        False,
        podTemplate={
            "spec": {
                "containers": [
                    {"name": "train", "securityContext": {"runAsUser": 1000}},
                    {
                        "name": "proxy",
                        "image": "proxy:1",
                        "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}},
                    },
                ]
            }
        },
    )
    assert_restricted(pod)
    containers = {c["name"]: c["securityContext"] for c in pod["containers"]}
    assert containers["train"]["runAsUser"] == 1000
    assert containers["proxy"]["capabilities"] == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}


def test_what_a_spec_sets_explicitly_is_kept_for_the_policy_to_judge() -> None:
    root = training_pod(
        SPOT_PRESETS["karpenter"],
        False,
        podTemplate={"spec": {"securityContext": {"runAsUser": 0}}},
    )
    # runAsNonRoot beside a root user would stop the container; the policy judges the root user.
    assert "runAsNonRoot" not in root["securityContext"]
    privileged = training_pod(
        SPOT_PRESETS["karpenter"],
        False,
        podTemplate={
            "spec": {"containers": [{"name": "train", "securityContext": {"privileged": True}}]}
        },
    )
    # The API server refuses allowPrivilegeEscalation: false beside privileged: true.
    assert "allowPrivilegeEscalation" not in privileged["containers"][0]["securityContext"]
    escalating = training_pod(
        SPOT_PRESETS["karpenter"],
        False,
        podTemplate={
            "spec": {
                "containers": [
                    {"name": "train", "securityContext": {"allowPrivilegeEscalation": True}}
                ]
            }
        },
    )
    assert escalating["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is True


@pytest.mark.parametrize(
    "dockerfile", ["Dockerfile", "examples/train/Dockerfile", "examples/serve/Dockerfile"]
)
def test_the_projects_images_run_as_a_numeric_non_root_user(dockerfile: str) -> None:
    """runAsNonRoot lets a container start only when its image names a numeric user other than
    0: the generated pods' default works with every image the project builds."""
    users = re.findall(r"^USER\s+(\S+)", (REPO / dockerfile).read_text(), re.MULTILINE)
    assert users, f"{dockerfile} names no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
