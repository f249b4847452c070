"""Argo Rollouts Rollout (argoproj.io/v1alpha1) to a Stratus InferenceService: the pod template's
serving container, the canary's setWeight and pause steps as rollout steps, and the Prometheus
metrics of the AnalysisTemplates it names as analysis metrics, their successCondition and
failureCondition read as bounds (min, max) on the query's value."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stratus.convert.report import Conversion, Manifest, whole
from stratus.convert.serving_pod import (
    PLACEHOLDER_MODEL_URI,
    assemble,
    container_fields,
    finish,
    guarded,
    mapping,
    metadata,
    pod_fields,
    required_mapping,
    text,
)

KIND = "argoproj.io/v1alpha1 Rollout"
GATEWAY_PLUGIN = "argoproj-labs/gatewayAPI"
# Stratus's placeholders for what Argo passes as analysis arguments.
HASH_VALUES = {"Latest": "{{canary}}", "Stable": "{{stable}}"}
FIELD_VALUES = {"metadata.name": "{{name}}", "metadata.namespace": "{{namespace}}"}
_ARG = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")
_VALUE = r"(?:asFloat\(\s*)?result(?:\[0\])?(?:\s*\))?"
_NUMBER = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_OP = r"<=|>=|<|>"
_LEFT = re.compile(rf"^\(?\s*{_VALUE}\s*({_OP})\s*({_NUMBER})\s*\)?$")
_RIGHT = re.compile(rf"^\(?\s*({_NUMBER})\s*({_OP})\s*{_VALUE}\s*\)?$")
# Guards for an empty or NaN result: Stratus counts such a measurement as inconclusive.
_GUARD = re.compile(
    r"^\(?\s*(len\(\s*result\s*\)\s*==\s*0|isNaN\([^()]*(\([^()]*\))?[^()]*\)|"
    r"isInf\([^()]*(\([^()]*\))?[^()]*\))\s*\)?$"
)
_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_STEP_KEYS = {"setWeight", "pause", "analysis"}
_SPEC_READ = {"template", "replicas", "strategy", "progressDeadlineSeconds"}
_CANARY_READ = {"steps", "analysis", "trafficRouting"}
MAX_LIMIT = 100


def convert_rollout(
    doc: dict[str, Any] | str, source: str, templates: list[dict[str, Any]] | None = None
) -> list[Conversion]:
    """One Rollout as one Stratus InferenceService; never raises for a bad one.

    `templates` are every AnalysisTemplate and ClusterAnalysisTemplate of the same input set:
    the ones the Rollout names (in its steps or background analysis) become its analysis."""
    conv = Conversion(source=source, kind=KIND, name="")
    if not isinstance(doc, dict):
        conv.error = "not a Kubernetes object"
        return [conv]
    conv.name = text(mapping(doc.get("metadata")).get("name", ""))
    return guarded(conv, lambda: _convert(doc, templates or [], conv))


def _convert(
    doc: dict[str, Any], templates: list[dict[str, Any]], conv: Conversion
) -> list[Conversion]:
    meta = required_mapping(doc.get("metadata"), "metadata")
    spec = required_mapping(doc.get("spec"), "spec")
    if "workloadRef" in spec and "template" not in spec:
        ref = mapping(spec["workloadRef"])
        raise ValueError(
            f"spec.workloadRef: the pod template is in {ref.get('kind', 'Deployment')} "
            f"{ref.get('name', '?')!r}; copy its spec.template into the Rollout's spec.template "
            "and convert again"
        )
    out_meta = metadata(meta, "Rollout", conv)
    template = required_mapping(spec.get("template"), "spec.template")
    pod = required_mapping(template.get("spec"), "spec.template.spec")
    containers = pod.get("containers")
    if not isinstance(containers, list) or not containers:
        raise ValueError("spec.template.spec.containers is empty")
    for i in range(1, len(containers)):
        conv.note(
            f"spec.template.spec.containers[{i}]",
            "dropped",
            "Stratus runs one server container per replica (the first)",
            "fold the sidecar into the server image, or ask for a workload policy that adds it",
        )
    first = required_mapping(containers[0], "spec.template.spec.containers[0]")
    container = container_fields(first, "spec.template.spec.containers[0]", conv)
    if "readinessProbe" not in first:
        conv.note(
            "spec.template.spec.containers[0].readinessProbe",
            "action",
            "no HTTP readiness probe: Stratus probes GET /healthz",
            "set spec.readinessPath to a path the server answers when ready",
        )
    pod_spec, override = pod_fields(pod, "spec.template.spec", conv, {"containers"})
    pod_meta = _pod_metadata(mapping(template.get("metadata")), conv)
    for key in template:
        if key not in {"metadata", "spec"}:
            conv.note(f"spec.template.{key}", "dropped", "not part of a pod template")
    resource = assemble(conv, out_meta, container, pod_spec, override, pod_meta)
    out = resource["spec"]
    out["model"] = {"uri": PLACEHOLDER_MODEL_URI}
    conv.note(
        "spec.template",
        "action",
        "a Rollout names no model, and a Stratus InferenceService always stages one into "
        f"/models (STRATUS_MODEL_DIR); spec.model.uri is the placeholder {PLACEHOLDER_MODEL_URI}",
        "set spec.model.uri to the model the server loads (s3://, gs://, https:// or pvc://)",
    )
    replicas = whole(spec.get("replicas", 1), "spec.replicas")
    if replicas < 1:
        conv.note("spec.replicas", "changed", "Stratus runs at least one replica")
        replicas = 1
    out["replicas"] = {"min": replicas, "max": replicas}
    out["rollout"] = _rollout(spec, templates, conv)
    for key in spec:
        if key == "selector":
            conv.note("spec.selector", "dropped", "Stratus labels and selects its own pods")
        elif key == "minReadySeconds":
            conv.note(
                "spec.minReadySeconds",
                "dropped",
                "Stratus counts a pod as available once its readiness probe passes",
            )
        elif key not in _SPEC_READ:
            conv.note(f"spec.{key}", "dropped", "Stratus has no such setting for a rollout")
    return finish(conv, resource)


def _pod_metadata(meta: dict[str, Any], conv: Conversion) -> Manifest | None:
    out: Manifest = {}
    for key in ("labels", "annotations"):
        if isinstance(meta.get(key), dict) and meta[key]:
            out[key] = {str(k): text(v) for k, v in meta[key].items()}
    for key in meta:
        if key not in {"labels", "annotations"}:
            conv.note(f"spec.template.metadata.{key}", "dropped", "Stratus names its own pods")
    return out or None


def _rollout(spec: dict[str, Any], templates: list[dict[str, Any]], conv: Conversion) -> Manifest:
    out: Manifest = {}
    if "progressDeadlineSeconds" in spec:
        out["progressDeadline"] = (
            f"{whole(spec['progressDeadlineSeconds'], 'spec.progressDeadlineSeconds')}s"
        )
    strategy = mapping(spec.get("strategy"))
    for key in strategy:
        if key not in {"canary", "blueGreen"}:
            conv.note(f"spec.strategy.{key}", "dropped", "not an Argo Rollouts strategy")
    if "blueGreen" in strategy:
        conv.note(
            "spec.strategy.blueGreen",
            "changed",
            "Stratus has no blue-green strategy: the new revision takes all traffic once ready "
            "(a canary without steps), and the preview, promotion and its analyses are not kept",
            "add rollout.steps and rollout.analysis to judge new revisions before they serve all "
            "traffic",
        )
        return out
    canary = mapping(strategy.get("canary"))
    refs: list[tuple[str, dict[str, Any]]] = []
    steps = _steps(canary.get("steps"), refs, conv)
    if steps:
        out["steps"] = steps
    _background(canary.get("analysis"), refs, conv)
    routing = _routing(canary.get("trafficRouting"), conv)
    if routing:
        out["trafficRouting"] = routing
    for key in canary:
        if key not in _CANARY_READ:
            conv.note(
                f"spec.strategy.canary.{key}",
                "dropped",
                "Stratus sizes and routes the canary itself (rollout.capacity, trafficRouting)",
            )
    analysis = Analysis(conv)
    for path, ref in refs:
        analysis.add(path, ref, templates)
    built = analysis.build()
    if built:
        out["analysis"] = built
    return out


def _background(background: Any, refs: list[tuple[str, dict[str, Any]]], conv: Conversion) -> None:
    if not isinstance(background, dict):
        return
    refs.append(("spec.strategy.canary.analysis", background))
    for key in background:
        if key not in {"templates", "args"}:
            conv.note(
                f"spec.strategy.canary.analysis.{key}",
                "changed",
                "Stratus judges the canary from its first step to its last",
            )


def _duration(value: Any) -> str:
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return f"{value}s"
    return text(value)


def _steps(steps: Any, refs: list[tuple[str, dict[str, Any]]], conv: Conversion) -> list[Manifest]:
    out: list[Manifest] = []
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        path = f"spec.strategy.canary.steps[{i}]"
        for key, value in mapping(step).items():
            where = f"{path}.{key}"
            if key == "setWeight":
                weight = whole(value, where)
                last = out[-1]["weight"] if out else 0
                if weight <= last or weight > MAX_LIMIT:
                    conv.note(
                        where,
                        "dropped",
                        f"Stratus step weights rise from 1 to 100; {weight} after {last} does not",
                    )
                else:
                    out.append({"weight": weight})
            elif key == "pause":
                _pause(out, mapping(value), where, conv)
            elif key == "analysis":
                refs.append((where, mapping(value)))
                for other in mapping(value):
                    if other not in {"templates", "args"}:
                        conv.note(f"{where}.{other}", "dropped", "Stratus runs one analysis")
                conv.note(
                    where,
                    "changed",
                    "Stratus judges the canary at every step, not only at this one",
                )
            else:
                conv.note(
                    where,
                    "dropped",
                    f"Stratus steps set a weight and a pause only, not {key}",
                )
    if out and out[-1]["weight"] < MAX_LIMIT:
        out.append({"weight": MAX_LIMIT})
    return out


def _pause(out: list[Manifest], pause: dict[str, Any], where: str, conv: Conversion) -> None:
    if not out:
        conv.note(where, "dropped", "a pause before the first setWeight: Stratus has no hold at 0%")
        return
    if "pause" in out[-1]:
        conv.note(where, "dropped", "a second pause at the same weight")
        return
    out[-1]["pause"] = {"duration": _duration(pause["duration"])} if "duration" in pause else {}


def _routing(routing: Any, conv: Conversion) -> Manifest | None:
    if not isinstance(routing, dict):
        return None
    plugins = mapping(routing.get("plugins"))
    gateway = mapping(plugins.get(GATEWAY_PLUGIN))
    route = gateway.get("httpRoute")
    for key in routing:
        if key == "plugins" and isinstance(route, str):
            for other in sorted(set(plugins) - {GATEWAY_PLUGIN}):
                conv.note(
                    f"spec.strategy.canary.trafficRouting.plugins.{other}",
                    "dropped",
                    "Stratus splits traffic by one Gateway API HTTPRoute",
                )
            for other in sorted(set(gateway) - {"httpRoute"}):
                conv.note(
                    f"spec.strategy.canary.trafficRouting.plugins.{GATEWAY_PLUGIN}.{other}",
                    "changed",
                    "Stratus splits traffic by one HTTPRoute, in the InferenceService's namespace",
                )
            continue
        conv.note(
            f"spec.strategy.canary.trafficRouting.{key}",
            "changed",
            "Stratus splits traffic by a Gateway API HTTPRoute or by replica ratio only",
            "put a Gateway API HTTPRoute in front and set rollout.trafficRouting.httpRoute",
        )
    return {"httpRoute": {"name": route}} if isinstance(route, str) else None


@dataclass
class Analysis:
    """The metrics of every template a Rollout names, merged into one Stratus analysis."""

    conv: Conversion
    metrics: list[Manifest] = field(default_factory=list)
    intervals: list[str] = field(default_factory=list)
    failure_limits: list[int] = field(default_factory=list)
    inconclusive_limits: list[int] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def add(self, path: str, ref: dict[str, Any], templates: list[dict[str, Any]]) -> None:
        args = _args(ref.get("args"), f"{path}.args", self.conv)
        for i, entry in enumerate(ref.get("templates") or []):
            name = text(mapping(entry).get("templateName", ""))
            if name in self.seen:
                continue
            self.seen.add(name)
            found = _template(templates, name, bool(mapping(entry).get("clusterScope")))
            if found is None:
                self.conv.note(
                    f"{path}.templates[{i}]",
                    "dropped",
                    f"AnalysisTemplate {name!r} is not in the input",
                    "convert it together with the Rollout",
                )
                continue
            self._template(name, found, args)

    def _template(self, name: str, tpl: dict[str, Any], given: dict[str, str | None]) -> None:
        path = f"AnalysisTemplate {name}: spec"
        spec = mapping(tpl.get("spec"))
        args = _args(spec.get("args"), f"{path}.args", self.conv, defaults=True) | given
        for key in spec:
            if key not in {"args", "metrics"}:
                self.conv.note(f"{path}.{key}", "dropped", "Stratus has no such analysis setting")
        for i, metric in enumerate(spec.get("metrics") or []):
            self._metric(f"{path}.metrics[{i}]", mapping(metric), args)

    def _metric(self, path: str, metric: dict[str, Any], args: dict[str, str | None]) -> None:
        conv = self.conv
        provider = mapping(metric.get("provider"))
        prometheus = provider.get("prometheus")
        if not isinstance(prometheus, dict) or "query" not in prometheus:
            conv.note(
                path,
                "dropped",
                "the whole metric: Stratus queries Prometheus only, not "
                f"{', '.join(provider) or 'nothing'}",
                "write the check as a PromQL query with min or max",
            )
            return
        try:
            query = _substitute(text(prometheus["query"]), args)
            low, high = _bounds(metric, path, conv)
        except ValueError as exc:
            conv.note(path, "dropped", str(exc), "add it to rollout.analysis.metrics by hand")
            return
        source_name = text(metric.get("name", "metric"))
        name = _metric_name(source_name, {m["name"] for m in self.metrics})
        if name != source_name:
            conv.note(
                f"{path}.name",
                "changed",
                f"renamed {name!r}: Stratus metric names are unique DNS labels",
            )
        entry: Manifest = {"name": name, "query": query}
        if low is not None:
            entry["min"] = low
        if high is not None:
            entry["max"] = high
        self.metrics.append(entry)
        for key in prometheus:
            if key == "address":
                conv.note(
                    f"{path}.provider.prometheus.address",
                    "action",
                    f"left unset: Stratus queries only the Prometheus addresses the cluster admin "
                    f"allows (the source used {_ARG.sub(_arg_text(args), text(prometheus[key]))})",
                    "ask the admin to allow it and set rollout.analysis.prometheusAddress, or "
                    "use the operator's default",
                )
            elif key != "query":
                conv.note(
                    f"{path}.provider.prometheus.{key}",
                    "dropped",
                    "Stratus queries Prometheus with the operator's own settings",
                )
        self._settings(path, metric)

    def _settings(self, path: str, metric: dict[str, Any]) -> None:
        for key, value in metric.items():
            if key == "interval":
                self.intervals.append(_duration(value))
            elif key == "failureLimit":
                self.failure_limits.append(_limit(value, f"{path}.{key}", self.conv))
            elif key == "inconclusiveLimit":
                self.inconclusive_limits.append(_limit(value, f"{path}.{key}", self.conv))
            elif key not in {"name", "provider", "successCondition", "failureCondition"}:
                self.conv.note(
                    f"{path}.{key}",
                    "dropped",
                    "Stratus measures every interval while the canary runs, with no count, "
                    "initial delay or error limit",
                )

    def build(self) -> Manifest | None:
        if not self.metrics:
            return None
        conv = self.conv
        out: Manifest = {"metrics": self.metrics}
        conv.note(
            "spec.strategy.canary.analysis",
            "action",
            "the queries are Argo's, with its arguments filled in; Stratus's pods carry their "
            "own labels",
            "check each query selects the canary's pods ({{canary}} is its revision)",
        )
        if self.intervals:
            out["interval"] = min(self.intervals, key=_seconds)
            if len(set(self.intervals)) > 1:
                conv.note(
                    "spec.strategy.canary.analysis.interval",
                    "changed",
                    f"one interval for every metric: the shortest, {out['interval']}",
                )
        else:
            conv.note(
                "spec.strategy.canary.analysis.interval",
                "changed",
                "Argo measured once without an interval; Stratus measures every minute",
            )
        for key, limits in (
            ("failureLimit", self.failure_limits),
            ("inconclusiveLimit", self.inconclusive_limits),
        ):
            if limits:
                out[key] = min(limits)
                if len(set(limits)) > 1:
                    conv.note(
                        f"spec.strategy.canary.analysis.{key}",
                        "changed",
                        f"one limit for every metric: the strictest, {out[key]}",
                    )
        return out


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(ms|s|m|h)", duration))


def _limit(value: Any, path: str, conv: Conversion) -> int:
    limit = whole(value, path)
    if limit < 0 or limit > MAX_LIMIT:
        conv.note(
            path, "changed", f"{limit} is out of Stratus's range 0 to {MAX_LIMIT}: {MAX_LIMIT}"
        )
        return MAX_LIMIT
    return limit


def _template(templates: list[dict[str, Any]], name: str, cluster: bool) -> dict[str, Any] | None:
    wanted = "ClusterAnalysisTemplate" if cluster else "AnalysisTemplate"
    named = [t for t in templates if mapping(t.get("metadata")).get("name") == name]
    exact = [t for t in named if t.get("kind") == wanted]
    found = exact or named
    return found[0] if found else None


def _args(args: Any, path: str, conv: Conversion, defaults: bool = False) -> dict[str, str | None]:
    """Argument values, as Stratus placeholders where Argo fills them in at run time; None for
    one Stratus cannot fill in."""
    out: dict[str, str | None] = {}
    for i, arg in enumerate(args if isinstance(args, list) else []):
        name = text(mapping(arg).get("name", ""))
        if "value" in arg:
            out[name] = text(arg["value"])
            continue
        source = mapping(arg.get("valueFrom"))
        hash_value = source.get("podTemplateHashValue")
        field_path = mapping(source.get("fieldRef")).get("fieldPath")
        if hash_value in HASH_VALUES:
            out[name] = HASH_VALUES[hash_value]
        elif field_path in FIELD_VALUES:
            out[name] = FIELD_VALUES[field_path]
        elif source:
            out[name] = None
            conv.note(
                f"{path}[{i}].valueFrom",
                "dropped",
                "Stratus fills in the revisions, the name and the namespace only",
                "write the value into the query",
            )
        elif not defaults:
            out[name] = None
    return out


def _arg_text(args: dict[str, str | None]) -> Callable[[re.Match[str]], str]:
    """An argument's value where it has one, for text shown to a person."""
    return lambda match: args.get(match.group(1)) or match.group(0)


def _substitute(query: str, args: dict[str, str | None]) -> str:
    def value(match: re.Match[str]) -> str:
        found = args.get(match.group(1))
        if found is None:
            raise ValueError(f"the query uses argument {match.group(1)!r}, which has no value")
        return found

    return _ARG.sub(value, query)


def _metric_name(name: str, taken: set[str]) -> str:
    base = _NOT_DNS.sub("-", name.lower()).strip("-")[:56] or "metric"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


@dataclass
class _Bounds:
    low: float | None = None
    high: float | None = None
    boundary: list[str] = field(default_factory=list)

    def add(self, op: str, number: float, source: str) -> None:
        """A passing bound `value op number`."""
        if op in {">", ">="}:
            self.low = number if self.low is None else max(self.low, number)
        else:
            self.high = number if self.high is None else min(self.high, number)
        if op in {"<", ">"}:
            self.boundary.append(source)


def _bounds(
    metric: dict[str, Any], path: str, conv: Conversion
) -> tuple[float | None, float | None]:
    """(min, max) passing values that the metric's conditions describe."""
    bounds = _Bounds()
    guards: list[str] = []
    conditions = [(k, metric[k]) for k in ("successCondition", "failureCondition") if k in metric]
    if not conditions:
        raise ValueError("no successCondition or failureCondition: Stratus needs a min or max")
    for key, condition in conditions:
        success = key == "successCondition"
        expr = text(condition).strip()
        joiner = "&&" if success else "||"
        other = "||" if success else "&&"
        clauses = _split(expr, other, guards)
        if len(clauses) != 1:
            raise ValueError(f"{key} {expr!r} is not a conjunction of bounds Stratus can read")
        for clause in _split(clauses[0], joiner, guards):
            op, number = _comparison(clause, f"{key} {expr!r}")
            bounds.add(op if success else _negate(op), number, key)
    if bounds.low is not None and bounds.high is not None and bounds.low > bounds.high:
        raise ValueError("the conditions pass no value at all")
    if bounds.boundary:
        conv.note(
            f"{path}.{bounds.boundary[0]}",
            "changed",
            "Stratus's min and max pass the bound itself; Argo's strict comparison did not",
        )
    if guards:
        conv.note(
            f"{path}.{conditions[0][0]}",
            "changed",
            f"{guards[0]}: Stratus counts an empty or NaN result as inconclusive",
            "set rollout.analysis.inconclusiveLimit",
        )
    return bounds.low, bounds.high


def _split(expr: str, operator: str, guards: list[str]) -> list[str]:
    """The clauses of `expr` joined by `operator`, less the empty/NaN guards (kept in guards)."""
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")") and _balanced(expr[1:-1]):
        expr = expr[1:-1].strip()
    parts = [p.strip() for p in _top_level(expr, operator)]
    kept = [p for p in parts if not _GUARD.match(p)]
    guards += [p for p in parts if _GUARD.match(p)]
    return kept


def _balanced(expr: str) -> bool:
    depth = 0
    for char in expr:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _top_level(expr: str, operator: str) -> list[str]:
    parts, depth, start, i = [], 0, 0, 0
    while i < len(expr):
        depth += {"(": 1, ")": -1}.get(expr[i], 0)
        if depth == 0 and expr.startswith(operator, i):
            parts.append(expr[start:i])
            start = i = i + len(operator)
            continue
        i += 1
    parts.append(expr[start:])
    return parts


def _comparison(clause: str, where: str) -> tuple[str, float]:
    """`value op number` for a clause comparing the result to a number, either way round."""
    if match := _LEFT.match(clause):
        op, number = match.group(1), float(match.group(2))
    elif match := _RIGHT.match(clause):
        op, number = _FLIP[match.group(2)], float(match.group(1))
    else:
        raise ValueError(f"{where}: {clause!r} is not a comparison of the result with a number")
    if not math.isfinite(number):
        raise ValueError(f"{where}: {clause!r} compares with a number that is not finite")
    return op, number


def _negate(op: str) -> str:
    """The passing bound for a failing one: failing above X passes at or below X."""
    return {">": "<=", ">=": "<", "<": ">=", "<=": ">"}[op]
