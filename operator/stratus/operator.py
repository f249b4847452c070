"""The operator process: kopf configured once at start-up, the controllers wired to it, and
Prometheus metrics served on their own port."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable
from typing import Any

import kopf

from stratus import config as config_module
from stratus import health, kube, metrics
from stratus.budgets import controller as budget_controller
from stratus.budgets import gate as budget_gate
from stratus.budgets import handlers as budget_handlers
from stratus.schedules import gate as schedule_gate
from stratus.serving import controller as serving_controller
from stratus.serving import handlers as serving_handlers
from stratus.training import controller as training_controller
from stratus.training import handlers as training_handlers
from stratus.wiring import nothing

log = logging.getLogger("stratus")
PREFIX = "stratus.dev"


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf builds a diff-base, a deep copy of the body, for every event it sees, for the sake
    of on.create/update/resume handlers. Stratus has none (only indexes and on.event), so the
    copies were never read: a sixth of the event loop's time under a burst."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class Options:
    """Set by `stratus operator` before kopf starts."""

    config = config_module.OperatorConfig()
    readiness: health.Readiness | None = None


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    cfg = Options.config
    # Stratus keeps its own state in status; kopf's own markers, if ever written, carry our
    # prefix instead of kopf.zalando.org.
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = NoDiffBase()
    # Handler logs are not worth an Event each; the controllers post the ones that matter.
    settings.posting.enabled = False
    # Indexes must hold every object: a worker limit below their count deadlocks start-up.
    settings.batching.worker_limit = None
    # Reconnect promptly when the API server restarts or a watch goes quiet.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    if cfg.peering:
        settings.peering.name = cfg.peering
        settings.peering.mandatory = True
        settings.peering.priority = (
            secrets.randbelow(2**31) + 1 if cfg.peering_priority is None else cfg.peering_priority
        )
        settings.peering.lifetime = cfg.peering_lifetime

    try:
        api = kube.load_client()
    except Exception as exc:
        # Without a cluster there is nothing to retry into: stop with the reason.
        raise kopf.PermanentError(f"cannot reach the API server: {exc}") from exc
    writer = kube.Kube(api)
    controller = training_controller.TrainingController(
        kube=writer,
        config=cfg,
        trainingjobs=nothing,
        jobs=nothing,
        pods=nothing,
    )
    training_handlers.WIRING.start(controller, controller.reconcile)
    controller.gates.append(schedule_gate.start_window)
    budgets = budget_controller.BudgetController(kube=writer, budgets=nothing, workloads=nothing)
    budget_handlers.WIRING.start(budgets, budgets.reconcile)
    controller.gates.append(budget_gate.gate(budgets.all_budgets))
    price = budget_gate.priced(cfg.prices)
    controller.advisors.append(budget_gate.fit_advisor(budgets.all_budgets, price))
    serving = serving_controller.ServingController(
        kube=writer,
        config=cfg,
        services=nothing,
        deployments=nothing,
        failures=nothing,
    )
    serving_handlers.WIRING.start(serving, serving.reconcile)
    # Serve first: a busy port fails the start-up hook before anything is registered twice.
    Options.readiness = health.Readiness(lambda: kube.api_unanswered(api))
    health.serve(cfg.metrics_port, Options.readiness)
    metrics.register_phases(metrics.TRAININGJOBS, "TrainingJobs by phase.", controller.phases)
    metrics.register_phases(
        metrics.INFERENCESERVICES, "InferenceServices by phase.", serving.phases
    )
    metrics.register_budgets(budgets.figures)
    metrics.register_workload_usage(
        lambda: [*controller.workloads_cached(), *serving.workloads_cached()]
    )
    Options.readiness.started = True
    log.info(
        "metrics and /readyz on :%d; spot capacity %s=%s",
        cfg.metrics_port,
        cfg.spot.label,
        cfg.spot.spot_value,
    )


def run(cfg: config_module.OperatorConfig, verbose: bool) -> None:
    """Run until interrupted. The API server is found as kubectl finds it (KUBECONFIG, then
    ~/.kube/config) or from the pod's ServiceAccount in a cluster."""
    Options.config = cfg
    # JSON lines for log pipelines, or text for people; kopf formats both.
    log_format = kopf.LogFormat.JSON if cfg.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(verbose=verbose, log_format=log_format)
    if not verbose:
        # kopf logs every handled event at INFO; the controllers log what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    health = cfg.metrics_port + 1 if cfg.health_port is None else cfg.health_port
    asyncio.run(
        kopf.operator(
            clusterwide=not cfg.namespaces,
            namespaces=list(cfg.namespaces),
            standalone=not cfg.peering,
            liveness_endpoint=f"http://0.0.0.0:{health}/healthz",
        )
    )
