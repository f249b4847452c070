"""Operator configuration: where spot capacity is and how it is marked, which namespaces to
watch, where metrics are served and which teams they name, which Prometheus addresses canary
analysis may query, what the workload policy lets a resource put into its pods, what a GPU-hour
costs. Read once at start-up from flags and STRATUS_* variables."""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass, field

from stratus.api.common import DNS_SUBDOMAIN_PATTERN, LABEL_VALUE_PATTERN
from stratus.cost.prices import PriceError, PriceTable
from stratus.cost.prices import parse as parse_prices
from stratus.policy import LEVELS, WorkloadPolicy


@dataclass(frozen=True)
class CapacityConvention:
    """How a cluster marks spot nodes: a node label with a spot value, and optionally a taint
    that keeps other pods off them."""

    label: str
    spot_value: str
    taint_key: str | None = None
    taint_value: str | None = None


SPOT_PRESETS: dict[str, CapacityConvention] = {
    "karpenter": CapacityConvention(
        "karpenter.sh/capacity-type", "spot", "karpenter.sh/capacity-type", "spot"
    ),
    "gke": CapacityConvention(
        "cloud.google.com/gke-spot", "true", "cloud.google.com/gke-spot", "true"
    ),
    "eks": CapacityConvention("eks.amazonaws.com/capacityType", "SPOT"),
    "aks": CapacityConvention(
        "kubernetes.azure.com/scalesetpriority",
        "spot",
        "kubernetes.azure.com/scalesetpriority",
        "spot",
    ),
}


@dataclass(frozen=True)
class OperatorConfig:
    spot: CapacityConvention = field(default_factory=lambda: SPOT_PRESETS["karpenter"])
    # Empty: every namespace (cluster-wide RBAC); otherwise only these.
    namespaces: tuple[str, ...] = ()
    metrics_port: int = 8080
    # The liveness probe's port; None: the metrics port + 1.
    health_port: int | None = None
    # kopf peering for high availability; empty disables it (a single replica).
    peering: str = ""
    # Port of the distributed-training rendezvous (torchrun's MASTER_PORT).
    master_port: int = 29500
    # Prometheus that canary analysis queries (and KEDA's ScaledObjects read) by default.
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    # Further Prometheus addresses an InferenceService may pick (analysis.prometheusAddress).
    # The operator queries no other: the spec is tenant input and must not choose its URLs.
    prometheus_addresses: tuple[str, ...] = ()
    # Image of the init container that stages models (it runs `python -m stratus.storage`).
    staging_image: str = "ghcr.io/stratus-dev/stratus-operator:0.1.0"
    # How long a replaced stable revision keeps serving after a promotion.
    retire_after_seconds: float = 30.0
    log_format: str = "text"
    # Seconds a silent peer is still considered alive (kopf peering, with `peering`).
    peering_lifetime: int = 60
    # This replica's peering priority: the live replica with the highest acts. None: a random
    # one per process, so that replicas of one Deployment never tie (a tie pauses them all).
    peering_priority: int | None = None
    # What a TrainingJob or InferenceService may put into the pods the operator creates.
    workload_policy: WorkloadPolicy = field(default_factory=WorkloadPolicy)
    # Teams that get their own metric series; any other shares the series of `other`.
    teams: frozenset[str] = frozenset()
    # Cost centers that get their own metric series; any other shares `other`.
    cost_centers: frozenset[str] = frozenset()
    # Prices per GPU-hour; without entries, usage shows GPU-hours and no cost.
    prices: PriceTable = field(default_factory=PriceTable)

    def prometheus_for(self, requested: str | None) -> str | None:
        """The configured Prometheus address that `requested` names (compared normalized), the
        default when it names none, None when it is not one the operator was given."""
        if requested is None:
            return self.prometheus_url
        wanted = normalize_address(requested)
        if wanted is None:
            return None
        allowed = (self.prometheus_url, *self.prometheus_addresses)
        return next((a for a in allowed if normalize_address(a) == wanted), None)


def normalize_address(address: str) -> str | None:
    """One spelling of an http(s) base address: lower-case scheme and host, the port written
    out, no trailing slash. None for anything else (credentials, a query or a fragment too)."""
    try:
        parts = urllib.parse.urlsplit(address)
        port = parts.port
    except ValueError:
        return None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
    ):
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{host}:{port}{parts.path.rstrip('/')}"


class ConfigError(ValueError):
    pass


def from_env(env: dict[str, str] | None = None) -> OperatorConfig:
    env = dict(os.environ if env is None else env)
    preset = env.get("STRATUS_SPOT_PRESET", "karpenter")
    if preset not in SPOT_PRESETS:
        raise ConfigError(
            f"STRATUS_SPOT_PRESET: unknown preset {preset!r}; one of {', '.join(SPOT_PRESETS)}"
        )
    spot = SPOT_PRESETS[preset]
    if "STRATUS_SPOT_LABEL" in env:
        label, _, value = env["STRATUS_SPOT_LABEL"].partition("=")
        taint_key, _, taint_value = env.get("STRATUS_SPOT_TAINT", "").partition("=")
        spot = CapacityConvention(label, value or "true", taint_key or None, taint_value or None)
    namespaces = tuple(n for n in env.get("STRATUS_NAMESPACES", "").split(",") if n)
    try:
        metrics_port = int(env.get("STRATUS_METRICS_PORT", "8080"))
    except ValueError as exc:
        raise ConfigError("STRATUS_METRICS_PORT: not a port number") from exc
    try:
        retire_after = float(env.get("STRATUS_RETIRE_AFTER_SECONDS", "30"))
    except ValueError as exc:
        raise ConfigError("STRATUS_RETIRE_AFTER_SECONDS: not a number of seconds") from exc
    defaults = OperatorConfig()
    addresses = tuple(
        a.strip() for a in env.get("STRATUS_PROMETHEUS_ADDRESSES", "").split(",") if a.strip()
    )
    # STRATUS_PROMETHEUS_URL alone names the default; the list alone, its first is the default.
    prometheus_url = env.get("STRATUS_PROMETHEUS_URL") or (
        addresses[0] if addresses else defaults.prometheus_url
    )
    for name, address in (
        *(("STRATUS_PROMETHEUS_ADDRESSES", a) for a in addresses),
        ("STRATUS_PROMETHEUS_URL", prometheus_url),
    ):
        if normalize_address(address) is None:
            raise ConfigError(
                f"{name}: {address!r} is not an http(s) address "
                "(scheme, host, optional port and path; no credentials, query or fragment)"
            )
    return OperatorConfig(
        workload_policy=_workload_policy(env),
        spot=spot,
        namespaces=namespaces,
        metrics_port=metrics_port,
        health_port=_optional_number(env, "STRATUS_HEALTH_PORT"),
        peering=env.get("STRATUS_PEERING", ""),
        prometheus_url=prometheus_url,
        prometheus_addresses=addresses,
        staging_image=env.get("STRATUS_STAGING_IMAGE", defaults.staging_image),
        retire_after_seconds=retire_after,
        log_format=_choice(env, "STRATUS_LOG_FORMAT", ("text", "json")),
        peering_lifetime=_number(env, "STRATUS_PEERING_LIFETIME", 60),
        peering_priority=_optional_number(env, "STRATUS_PEERING_PRIORITY"),
        teams=_teams(env),
        cost_centers=_teams(env, "STRATUS_COST_CENTERS"),
        prices=_prices(env),
    )


def _teams(env: dict[str, str], name: str = "STRATUS_TEAMS") -> frozenset[str]:
    teams = [t.strip() for t in env.get(name, "").split(",") if t.strip()]
    for team in teams:
        if not re.fullmatch(LABEL_VALUE_PATTERN, team) or len(team) > 63:
            raise ConfigError(f"{name}: {team!r} is not a label value")
    return frozenset(teams)


def _prices(env: dict[str, str]) -> PriceTable:
    try:
        return parse_prices(env.get("STRATUS_PRICES"), env.get("STRATUS_CURRENCY"))
    except PriceError as exc:
        raise ConfigError(str(exc)) from None


def _workload_policy(env: dict[str, str]) -> WorkloadPolicy:
    value = env.get("STRATUS_WORKLOAD_POLICY", LEVELS[0])
    level = next((known for known in LEVELS if known == value), None)
    if level is None:
        raise ConfigError(f"STRATUS_WORKLOAD_POLICY: {value!r} is not one of {', '.join(LEVELS)}")
    accounts = tuple(
        a.strip() for a in env.get("STRATUS_ALLOWED_SERVICE_ACCOUNTS", "").split(",") if a.strip()
    )
    for account in accounts:
        if not re.fullmatch(DNS_SUBDOMAIN_PATTERN, account) or len(account) > 253:
            raise ConfigError(
                f"STRATUS_ALLOWED_SERVICE_ACCOUNTS: {account!r} is not a ServiceAccount name"
            )
    return WorkloadPolicy(level=level, service_accounts=accounts)


def _number(env: dict[str, str], name: str, default: int) -> int:
    try:
        return int(env.get(name, str(default)))
    except ValueError as exc:
        raise ConfigError(f"{name}: not a whole number") from exc


def _optional_number(env: dict[str, str], name: str) -> int | None:
    return _number(env, name, 0) if name in env else None


def _choice(env: dict[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, allowed[0])
    if value not in allowed:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
    return value
