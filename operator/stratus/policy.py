"""The workload policy: what a TrainingJob or InferenceService may put into the pods the operator
creates. The spec is tenant input and the operator creates its children with its own identity, so
the cluster admin chooses (chart value `workloadPolicy`) what a resource may ask for:

- `baseline` (the default): the Pod Security `baseline` profile (no host namespaces, privileged
  containers, added capabilities beyond its list, hostPath volumes or host ports, ...), and pods
  run as the namespace's `default` ServiceAccount or one the admin allows.
- `restricted`: that, and the `restricted` profile too.
- `none`: no check, an explicit opt-out.

Only what the tenant wrote is judged (`spec.volumes`, `spec.podTemplate`), so a refusal names
the tenant's own field. What the builders generate passes `restricted` by construction, and
whatever the tenant leaves unset gets the restricted default (`podspec.restricted_defaults`)."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from stratus.api.common import Workload
from stratus.conditions import Event, Status, set_condition

Level = Literal["baseline", "restricted", "none"]
LEVELS: tuple[Level, ...] = ("baseline", "restricted", "none")
# The condition reason and Event reason of a refusal.
REASON = "PolicyViolation"
DEFAULT_SERVICE_ACCOUNT = "default"

# The Pod Security Standards, as of Kubernetes v1.34.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
RESTRICTED_SECCOMP = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
HOST_NAMESPACES = {"hostNetwork": "network", "hostPID": "process", "hostIPC": "IPC"}
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
# At most this many violations are spelled out in a condition's message.
SHOWN = 3


@dataclass(frozen=True)
class WorkloadPolicy:
    level: Level = "baseline"
    # ServiceAccounts a resource's pods may run as besides the namespace's `default`.
    service_accounts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Violation:
    """One field the policy refuses: its path in the resource, as the API server names fields."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check(spec: Workload, policy: WorkloadPolicy) -> tuple[Violation, ...]:
    """Every field of `spec` the policy refuses; empty when the pods may be created."""
    if policy.level == "none":
        return ()
    judge = _Judge(policy)
    for i, volume in enumerate(spec.volumes):
        judge.volume(f"spec.volumes[{i}]", volume.model_dump(by_alias=True, exclude_none=True))
    template = spec.pod_template
    if template and template.metadata:
        judge.annotations("spec.podTemplate.metadata.annotations", template.metadata.annotations)
    if template and template.spec:
        judge.pod("spec.podTemplate.spec", template.spec.model_dump(by_alias=True))
    return tuple(judge.found)


def describe(violations: tuple[Violation, ...]) -> str:
    """One line for a condition and an Event: the first few violations, and how many more."""
    shown = "; ".join(str(v) for v in violations[:SHOWN])
    more = len(violations) - SHOWN
    return f"{shown}; and {more} more" if more > 0 else shown


def refused(
    status: Status,
    violations: tuple[Violation, ...],
    condition: str,
    now: dt.datetime,
    generation: int,
) -> tuple[Status, list[Event]]:
    """The status that shows a refusal (`condition` False, reason PolicyViolation, the fields
    named), and the Event to post: one when the refusal is new, none while it is already shown."""
    message = describe(violations)
    new = copy.deepcopy(status)
    set_condition(new, condition, False, REASON, message, now, generation)
    before: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == condition), {}
    )
    shown = before.get("reason") == REASON and before.get("message") == message
    return new, [] if shown else [Event("Warning", REASON, message)]


class _Judge:
    def __init__(self, policy: WorkloadPolicy) -> None:
        self.policy = policy
        self.restricted = policy.level == "restricted"
        self.found: list[Violation] = []

    def refuse(self, path: str, what: str, level: Level = "baseline") -> None:
        self.found.append(Violation(path, f"{what}: not allowed by the workload policy ({level})"))

    def pod(self, path: str, spec: Mapping[str, Any]) -> None:
        for field, namespace in HOST_NAMESPACES.items():
            if spec.get(field):
                self.refuse(f"{path}.{field}", f"shares the node's {namespace} namespace")
        for field in ("serviceAccountName", "serviceAccount"):
            self.service_account(f"{path}.{field}", spec.get(field))
        self.security_context(f"{path}.securityContext", spec.get("securityContext"), pod=True)
        for i, volume in _items(spec.get("volumes")):
            self.volume(f"{path}.volumes[{i}]", volume)
        for kind in CONTAINER_LISTS:
            for i, container in _items(spec.get(kind)):
                self.container(f"{path}.{kind}[{i}]", container)

    def service_account(self, path: str, name: Any) -> None:
        allowed = (DEFAULT_SERVICE_ACCOUNT, *self.policy.service_accounts)
        if name is not None and name not in allowed:
            self.refuse(
                path,
                f"ServiceAccount {name!r} is neither the namespace's default nor one the "
                f"cluster admin allows ({', '.join(allowed)})",
            )

    def container(self, path: str, container: Mapping[str, Any]) -> None:
        for i, port in _items(container.get("ports")):
            if port.get("hostPort"):
                self.refuse(f"{path}.ports[{i}].hostPort", "a port of the node")
        self.security_context(
            f"{path}.securityContext", container.get("securityContext"), pod=False
        )

    def security_context(self, path: str, context: Any, pod: bool) -> None:
        """What a pod's or a container's securityContext sets."""
        if not isinstance(context, Mapping):
            return
        self.confinement(path, context)
        if self.restricted and context.get("runAsNonRoot") is False:
            self.refuse(f"{path}.runAsNonRoot", "running as root", "restricted")
        if self.restricted and context.get("runAsUser") == 0:
            self.refuse(f"{path}.runAsUser", "user 0 (root)", "restricted")
        if pod:
            for i, sysctl in _items(context.get("sysctls")):
                if sysctl.get("name") not in SAFE_SYSCTLS:
                    self.refuse(f"{path}.sysctls[{i}]", f"sysctl {sysctl.get('name')!r}")
        else:
            self.container_privileges(path, context)

    def confinement(self, path: str, context: Mapping[str, Any]) -> None:
        """The Windows host process, SELinux, seccomp and AppArmor settings."""
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            self.refuse(f"{path}.windowsOptions.hostProcess", "a Windows host process")
        selinux = context.get("seLinuxOptions") or {}
        if (selinux.get("type") or "") not in SELINUX_TYPES:
            self.refuse(f"{path}.seLinuxOptions.type", f"SELinux type {selinux['type']!r}")
        for field in ("user", "role"):
            if selinux.get(field):
                self.refuse(f"{path}.seLinuxOptions.{field}", f"an SELinux {field}")
        seccomp = (context.get("seccompProfile") or {}).get("type")
        if seccomp == "Unconfined":
            self.refuse(f"{path}.seccompProfile.type", "no seccomp profile (Unconfined)")
        elif self.restricted and seccomp is not None and seccomp not in RESTRICTED_SECCOMP:
            self.refuse(f"{path}.seccompProfile.type", f"seccomp {seccomp!r}", "restricted")
        if (context.get("appArmorProfile") or {}).get("type") == "Unconfined":
            self.refuse(f"{path}.appArmorProfile.type", "no AppArmor profile (Unconfined)")

    def container_privileges(self, path: str, context: Mapping[str, Any]) -> None:
        if context.get("privileged"):
            self.refuse(f"{path}.privileged", "a privileged container")
        if context.get("procMount", "Default") != "Default":
            self.refuse(f"{path}.procMount", f"procMount {context['procMount']!r}")
        if self.restricted and context.get("allowPrivilegeEscalation"):
            self.refuse(f"{path}.allowPrivilegeEscalation", "privilege escalation", "restricted")
        added = (context.get("capabilities") or {}).get("add") or []
        allowed = RESTRICTED_CAPABILITIES if self.restricted else BASELINE_CAPABILITIES
        for i, capability in enumerate(added):
            if capability not in allowed:
                self.refuse(
                    f"{path}.capabilities.add[{i}]",
                    f"capability {capability!r}",
                    "restricted" if capability in BASELINE_CAPABILITIES else "baseline",
                )

    def volume(self, path: str, volume: Mapping[str, Any]) -> None:
        if "hostPath" in volume:
            self.refuse(f"{path}.hostPath", "a directory of the node (hostPath)")
            return
        if not self.restricted:
            return
        for kind in sorted(set(volume) - {"name"} - RESTRICTED_VOLUME_TYPES):
            self.refuse(f"{path}.{kind}", f"a {kind} volume", "restricted")

    def annotations(self, path: str, annotations: Mapping[str, str]) -> None:
        for key, value in annotations.items():
            if key.startswith(APPARMOR_ANNOTATION) and not (
                value == "runtime/default" or value.startswith("localhost/")
            ):
                self.refuse(f"{path}[{key}]", f"AppArmor profile {value!r}")


def _items(value: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """The mappings of a list the tenant wrote, with their indexes; anything else is skipped
    (the API server refuses a malformed pod spec itself)."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                yield i, item
