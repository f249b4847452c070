"""The few API calls the local cluster makes about its own nodes: create them, read their
readiness, and reclaim one the way a cloud reclaims a spot node."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, utils
from kubernetes.client.exceptions import ApiException

from stratus.devcluster import nodepools

# The NoExecute taint a reclaimed spot node gets: the taint-eviction controller then deletes its
# pods with the DisruptionTarget condition, as it does when a cloud takes a node away.
RECLAIM_TAINT = {"key": "stratus.dev/spot-reclaimed", "value": "true", "effect": "NoExecute"}


@dataclass
class NodeApi:
    core: client.CoreV1Api

    def create_node(self, manifest: dict[str, Any]) -> None:
        try:
            self.core.create_node(manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def delete_nodes(self, names: list[str]) -> None:
        for name in names:
            try:
                self.core.delete_node(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def ready_nodes(self) -> set[str]:
        ready = set()
        for node in self.core.list_node().items:
            for cond in node.status.conditions or []:
                if cond.type == "Ready" and cond.status == "True":
                    ready.add(node.metadata.name)
        return ready

    def service_account_exists(self, namespace: str, name: str) -> bool:
        try:
            self.core.read_namespaced_service_account(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def apply_all(self, manifests: list[dict[str, Any]]) -> None:
        """Create each object; one that exists already is left as it is."""
        for manifest in manifests:
            try:
                utils.create_from_dict(self.core.api_client, manifest)
            except utils.FailToCreateError as exc:
                if any(e.status != 409 for e in exc.api_exceptions):
                    raise

    def create_custom(self, manifests: list[dict[str, Any]]) -> None:
        """Create custom objects (cluster-scoped, or namespaced with metadata.namespace); one
        that exists already is left as it is."""
        custom = client.CustomObjectsApi(self.core.api_client)
        for manifest in manifests:
            group, _, version = manifest["apiVersion"].partition("/")
            kind = manifest["kind"].lower()
            plural = kind + ("es" if kind.endswith("s") else "s")
            namespace = manifest["metadata"].get("namespace")
            try:
                if namespace:
                    custom.create_namespaced_custom_object(
                        group, version, namespace, plural, manifest
                    )
                else:
                    custom.create_cluster_custom_object(group, version, plural, manifest)
            except ApiException as exc:
                if exc.status != 409:
                    raise

    def create_crds(self, files: list[Path]) -> list[str]:
        """Create the CRDs in `files`; their names."""
        docs = [doc for f in files for doc in yaml.safe_load_all(f.read_text()) if doc]
        self.apply_all(docs)
        return [doc["metadata"]["name"] for doc in docs]

    def crds_established(self, names: list[str]) -> bool:
        ext = client.ApiextensionsV1Api(self.core.api_client)
        for name in names:
            conditions = ext.read_custom_resource_definition(name).status.conditions or []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    def patch_node_status(self, node: str, patch: dict[str, Any]) -> None:
        self.core.patch_node_status(node, patch)

    def pods_on(self, node: str) -> list[Any]:
        pods = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
        return [p for p in pods if not _is_daemon(p)]

    def preempt(
        self, node: str, delete: bool = True, replace: bool = False, drain_timeout: float = 60.0
    ) -> str | None:
        """Reclaim `node`: taint it NoExecute, wait for its pods to go, then delete it. With
        `replace`, a new node of the same pool joins (as an autoscaler would bring one up).
        Returns the replacement's name.

        The real node is a machine, not a Node object to recreate: it keeps its Node, stays
        tainted (its capacity is gone), and with `replace` comes back as the new capacity once
        its pods have stopped."""
        current = self.core.read_node(node)
        taints = _taints(current)
        if not any(t["key"] == RECLAIM_TAINT["key"] for t in taints):
            taints.append(RECLAIM_TAINT)
            self.core.patch_node(node, {"spec": {"taints": taints}})
        deadline = time.monotonic() + drain_timeout
        while self.pods_on(node) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _is_real(current):
            if not replace:
                return None
            kept = [t for t in taints if t["key"] != RECLAIM_TAINT["key"]]
            self.core.patch_node(node, {"spec": {"taints": kept or None}})
            return node
        if not delete:
            return None
        self.core.delete_node(node)
        if not replace:
            return None
        labels = current.metadata.labels or {}
        pool_name = labels.get(nodepools.POOL_LABEL)
        existing = {n.metadata.name for n in self.core.list_node().items}
        replacement = _replacement(current, pool_name, existing)
        self.create_node(replacement)
        return str(replacement["metadata"]["name"])


def _taints(node: Any) -> list[dict[str, str]]:
    return [
        {"key": t.key, "value": t.value or "", "effect": t.effect} for t in node.spec.taints or []
    ]


def _is_real(node: Any) -> bool:
    return nodepools.KWOK_NODE_ANNOTATION not in (node.metadata.annotations or {})


def _is_daemon(pod: Any) -> bool:
    return any(ref.kind == "DaemonSet" for ref in pod.metadata.owner_references or [])


def _replacement(node: Any, pool_name: str | None, existing: set[str]) -> dict[str, Any]:
    prefix = pool_name or node.metadata.name
    index = 0
    while f"{prefix}-{index}" in existing or f"{prefix}-{index}" == node.metadata.name:
        index += 1
    name = f"{prefix}-{index}"
    labels = dict(node.metadata.labels or {})
    labels["kubernetes.io/hostname"] = name
    taints = [t for t in _taints(node) if t["key"] != RECLAIM_TAINT["key"]]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {nodepools.KWOK_NODE_ANNOTATION: nodepools.KWOK_NODE_VALUE},
        },
        "spec": {"taints": taints},
        "status": {
            "capacity": dict(node.status.capacity),
            "allocatable": dict(node.status.allocatable),
        },
    }


def connect(kubeconfig: Path) -> NodeApi:
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    return NodeApi(client.CoreV1Api(api_client))


def service_account_kubeconfig(
    admin_kubeconfig: Path, namespace: str, account: str, path: Path, seconds: int = 3600
) -> Path:
    """Write a kubeconfig for the same cluster that authenticates as a ServiceAccount, with a
    token from the TokenRequest API: how the operator runs under the chart's identity out of
    cluster, so that its RBAC is what is tested and its requests can be told apart."""
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(admin_kubeconfig)))
    token = core.create_namespaced_service_account_token(
        account, namespace, {"spec": {"expirationSeconds": seconds}}
    ).status.token
    cluster = admin["clusters"][0]
    context = {"cluster": cluster["name"], "user": account}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [{"name": account, "context": context}],
                "current-context": account,
            }
        )
    )
    return path


def bind_host_directory(
    core: client.CoreV1Api, namespace: str, claim: str, volume: str, directory: Path
) -> None:
    """A PersistentVolume on `directory` of the real node, bound to the claim `claim`: storage
    provisioned by hand, as an admin does where no provisioner runs."""
    core.create_persistent_volume(
        {
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(directory), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": claim},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
