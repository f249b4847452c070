"""Pure builders for an InferenceService: a Deployment per revision (with the model staged by an
init container), one Service across revisions, a PodDisruptionBudget and an HPA."""

from __future__ import annotations

import re

from stratus import podspec
from stratus.api.inferenceservice import DEFAULT_MODEL_SIZE_LIMIT, InferenceServiceSpec
from stratus.podspec import MANAGED_BY_LABEL, MANAGER, Manifest, Owner
from stratus.serving.labels import INFERENCESERVICE_LABEL, REVISION_LABEL
from stratus.serving.revision import LENGTH as REVISION_LENGTH

# How long a terminating serving pod keeps serving before SIGTERM: what an EndpointSlice change
# takes to reach every node's proxy (kube-proxy syncs within a second or two; 5 s leaves room).
DRAIN_SECONDS = 5

SERVER = "server"
MODEL_DIR = "/models"
MODEL_VOLUME = "stratus-model"
MODEL_SOURCE_VOLUME = "stratus-model-source"
PVC_ROOT = "/mnt/model-source"
MODEL_CA_VOLUME = "stratus-model-ca"
MODEL_CA_DIR = "/etc/stratus/model-ca"
MODEL_CA_KEY = "ca.crt"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# The staging init container's share: it streams the download to disk, so memory stays small.
STAGING_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}}
# The port every Service of an InferenceService listens on.
SERVICE_PORT = 80
# (apiVersion, kind) of the autoscalers, for deleting one no longer asked for.
HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")
SCALED_OBJECT = ("keda.sh/v1alpha1", "ScaledObject")
# A revision hash, as the suffix of a revision's Deployment and Service names.
_REVISION = re.compile(f"[0-9a-f]{{{REVISION_LENGTH}}}")


def deployment_name(owner: Owner, revision: str) -> str:
    return f"{owner.name}-{revision}"


def service_url(owner: Owner) -> str:
    return f"http://{owner.name}.{owner.namespace}.svc.cluster.local"


def _labels(
    owner: Owner, revision: str | None = None, spec: InferenceServiceSpec | None = None
) -> dict[str, str]:
    """A child's labels; with the spec, the team and cost center too (on what costs: the
    Deployments, their pods and the autoscaler)."""
    labels = {INFERENCESERVICE_LABEL: owner.name, MANAGED_BY_LABEL: MANAGER}
    if spec:
        labels.update(podspec.cost_labels(spec))
    if revision:
        labels[REVISION_LABEL] = revision
    return labels


def _meta(owner: Owner, name: str, labels: dict[str, str]) -> Manifest:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [owner.reference()],
    }


def _staging(spec: InferenceServiceSpec, staging_image: str) -> tuple[Manifest, list[Manifest]]:
    """The init container that stages the model, and the volumes it needs."""
    size_limit = spec.model.size_limit or DEFAULT_MODEL_SIZE_LIMIT
    args = [
        "python",
        "-m",
        "stratus.storage",
        "fetch",
        "--uri",
        spec.model.uri,
        "--dest",
        MODEL_DIR,
        "--max-size",
        size_limit,
    ]
    if spec.model.sha256:
        args += ["--sha256", spec.model.sha256]
    mounts: list[Manifest] = [{"name": MODEL_VOLUME, "mountPath": MODEL_DIR}]
    volumes: list[Manifest] = [{"name": MODEL_VOLUME, "emptyDir": {"sizeLimit": size_limit}}]
    if spec.model.uri.startswith("pvc://"):
        claim = spec.model.uri.removeprefix("pvc://").split("/", 1)[0]
        volumes.append(
            {
                "name": MODEL_SOURCE_VOLUME,
                "persistentVolumeClaim": {"claimName": claim, "readOnly": True},
            }
        )
        mounts.append({"name": MODEL_SOURCE_VOLUME, "mountPath": PVC_ROOT, "readOnly": True})
    if spec.model.ca_config_map:
        # The tenant's own CA, for the download only: the server container never sees it.
        volume, mount = podspec.config_map_file(
            MODEL_CA_VOLUME, spec.model.ca_config_map, MODEL_CA_KEY, MODEL_CA_DIR
        )
        volumes.append(volume)
        mounts.append(mount)
        args += ["--ca-file", f"{MODEL_CA_DIR}/{MODEL_CA_KEY}"]
    init: Manifest = {
        "name": "stage-model",
        "image": staging_image,
        "command": args,
        "volumeMounts": mounts,
        "resources": STAGING_RESOURCES,
        # Staging writes its one-line reason here, on every failure; the pod status carries it.
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "File",
    }
    # The store's endpoint and the tenant's credentials, for the download only: the server
    # container never sees them.
    if env := podspec.object_store_env(spec.model.endpoint, spec.model.credentials_secret):
        init["env"] = env
    return init, volumes


def _own_pre_stop(spec: InferenceServiceSpec) -> bool:
    template = spec.pod_template
    if template is None or template.spec is None:
        return False
    containers = template.spec.model_dump(by_alias=True, exclude_none=True).get("containers", [])
    return any(c.get("name") == SERVER and "preStop" in c.get("lifecycle", {}) for c in containers)


def build_deployment(
    owner: Owner, spec: InferenceServiceSpec, revision: str, replicas: int, staging_image: str
) -> Manifest:
    """A revision's Deployment. `replicas` is applied with it: the planner applies the
    Deployment of an autoscaled stable revision only to create it (see planner)."""
    labels = _labels(owner, revision, spec)
    init, volumes = _staging(spec, staging_image)
    env = [
        {"name": "STRATUS_MODEL_DIR", "value": MODEL_DIR},
        # So a server can label its own answers and metrics with the revision that gave them.
        {"name": "STRATUS_REVISION", "value": revision},
        {"name": "PORT", "value": str(spec.port)},
    ]
    server = podspec.container(
        SERVER,
        spec,
        env,
        [{"name": MODEL_VOLUME, "mountPath": MODEL_DIR, "readOnly": True}],
        spec.resources,
    )
    probe = {"httpGet": {"path": spec.readiness_path, "port": "http"}}
    server["ports"] = [{"name": "http", "containerPort": spec.port}]
    server["readinessProbe"] = {**probe, "periodSeconds": 5, "failureThreshold": 3}
    # A pod scaled away keeps serving until its endpoint's removal has reached every node;
    # a server that stops listening at SIGTERM would otherwise refuse requests still routed to it.
    # A tenant's own preStop replaces it (the API allows one handler).
    if not _own_pre_stop(spec):
        server["lifecycle"] = {"preStop": {"sleep": {"seconds": DRAIN_SECONDS}}}
    server["livenessProbe"] = {
        **probe,
        "periodSeconds": 10,
        "failureThreshold": 6,
        "initialDelaySeconds": 30,
    }
    terms, tolerations = podspec.gpu_placement(spec.resources)
    pod_spec: Manifest = {
        "initContainers": [init],
        "containers": [server],
        "volumes": podspec.volumes(spec, volumes),
    }
    if terms:
        pod_spec["affinity"] = podspec.affinity(terms)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(owner, deployment_name(owner, revision), labels),
        "spec": {
            "replicas": replicas,
            "selector": {
                "matchLabels": {INFERENCESERVICE_LABEL: owner.name, REVISION_LABEL: revision}
            },
            "template": podspec.template(spec, labels, pod_spec),
        },
    }


def build_service(
    owner: Owner, selector: dict[str, str] | None = None, *, proxy: bool = False
) -> Manifest:
    """One Service across every revision: traffic splits by ready replicas. While a candidate
    is validated, `selector` narrows it to the stable revision, or to the shadow `proxy`. The
    proxy's pod stops being Ready when its report container ends, while the proxy still serves
    until the Service has left it: so its address is published regardless of readiness (the
    controller selects it only while the proxy container itself is ready)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, owner.name, _labels(owner)),
        "spec": {
            "selector": selector or {INFERENCESERVICE_LABEL: owner.name},
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}],
            "publishNotReadyAddresses": proxy,
        },
    }


def build_pdb(owner: Owner) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(owner, owner.name, _labels(owner)),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {INFERENCESERVICE_LABEL: owner.name}},
        },
    }


def build_hpa(owner: Owner, spec: InferenceServiceSpec, revision: str) -> Manifest | None:
    """An autoscaling/v2 HPA on the stable revision for cpu or memory; None otherwise."""
    scaling = spec.autoscaling
    if scaling is None or scaling.metric == "prometheus":
        return None
    return {
        "apiVersion": HPA[0],
        "kind": HPA[1],
        "metadata": _meta(owner, owner.name, _labels(owner, spec=spec)),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": deployment_name(owner, revision),
            },
            "minReplicas": max(1, spec.replicas.min),
            "maxReplicas": spec.replicas.max,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": scaling.metric,
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": int(scaling.target),
                        },
                    },
                }
            ],
        },
    }


def revision_service_name(owner: Owner, revision: str) -> str:
    return deployment_name(owner, revision)


def is_revision_service(owner: Owner, name: str) -> bool:
    prefix = f"{owner.name}-"
    return name.startswith(prefix) and bool(_REVISION.fullmatch(name.removeprefix(prefix)))


def build_revision_service(owner: Owner, revision: str) -> Manifest:
    """A Service per revision: the backends an HTTPRoute weighs against each other."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, revision_service_name(owner, revision), _labels(owner, revision)),
        "spec": {
            "selector": {INFERENCESERVICE_LABEL: owner.name, REVISION_LABEL: revision},
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}],
        },
    }


def routes_here(owner: Owner, ref: Manifest) -> bool:
    """Whether an HTTPRoute backendRef is one of this InferenceService's Services: the shared
    one (`<name>`) or a revision's (`<name>-<revision hash>`), in its own namespace."""
    if (ref.get("group") or "") != "" or (ref.get("kind") or "Service") != "Service":
        return False
    if (ref.get("namespace") or owner.namespace) != owner.namespace:
        return False
    name = str(ref.get("name") or "")
    revision = name.removeprefix(f"{owner.name}-")
    return name == owner.name or (revision != name and bool(_REVISION.fullmatch(revision)))


def own_rule(owner: Owner, rule: Manifest) -> bool:
    """A rule that sends traffic to this InferenceService only: every backend is one of its
    Services. Any other rule (another team's Service, a mix, a redirect) is not ours."""
    refs = rule.get("backendRefs") or []
    return bool(refs) and all(routes_here(owner, ref) for ref in refs)


def weighted_rules(
    rules: list[Manifest], owner: Owner, stable: str, canary: str | None, weight: int
) -> list[Manifest]:
    """The route's rules, with the backends of this InferenceService's own rules replaced by
    the stable and canary Services, weighted; everything else in those rules (matches,
    filters) is kept, and every other rule is left exactly as it is. A route without rules
    gets one."""
    backends = [
        {
            "name": revision_service_name(owner, stable),
            "port": 80,
            "weight": 100 - weight if canary else 100,
        }
    ]
    if canary:
        backends.append(
            {"name": revision_service_name(owner, canary), "port": 80, "weight": weight}
        )
    if not rules:
        return [{"backendRefs": backends}]
    return [{**rule, "backendRefs": backends} if own_rule(owner, rule) else rule for rule in rules]


def build_scaled_object(
    owner: Owner, spec: InferenceServiceSpec, revision: str, prometheus_url: str
) -> Manifest | None:
    """A KEDA ScaledObject for a Prometheus-query target; None for cpu and memory."""
    scaling = spec.autoscaling
    if scaling is None or scaling.metric != "prometheus" or scaling.query is None:
        return None
    return {
        "apiVersion": SCALED_OBJECT[0],
        "kind": SCALED_OBJECT[1],
        "metadata": _meta(owner, owner.name, _labels(owner, spec=spec)),
        "spec": {
            "scaleTargetRef": {"name": deployment_name(owner, revision)},
            "minReplicaCount": spec.replicas.min,
            "maxReplicaCount": spec.replicas.max,
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": prometheus_url,
                        "query": scaling.query,
                        "threshold": str(scaling.target),
                    },
                }
            ],
        },
    }
