"""The `stratus` command."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratus import extras

if TYPE_CHECKING:
    from stratus.devcluster.cluster import LocalCluster


def _dev_cluster(args: argparse.Namespace) -> LocalCluster:
    # Imported here: the operator's image does not ship the local cluster's dependencies, nor
    # does a plain `pip install stratus-operator` (the devcluster extra does).
    extras.require("devcluster", "stratus dev")
    from stratus.devcluster import cluster, nodepools, realnode  # noqa: PLC0415

    pools = nodepools.load_pools(getattr(args, "pools", None))
    attach = getattr(args, "attach", None)
    node = None
    if getattr(args, "real_node", False) and attach is None:
        reason = realnode.unavailable()
        if reason:
            print(f"no real node: {reason}", file=sys.stderr)
        else:
            node = realnode.RealNode()
    return cluster.LocalCluster(args.state_dir, pools, attach_to=attach, real_node=node)


def cmd_dev_up(args: argparse.Namespace) -> int:
    local = _dev_cluster(args)
    state = local.up(timeout=args.timeout)
    print(f"kubeconfig: {state.kubeconfig}")
    return 0


def cmd_dev_down(args: argparse.Namespace) -> int:
    local = _dev_cluster(args)
    local.down()
    return 0


def cmd_dev_status(args: argparse.Namespace) -> int:
    local = _dev_cluster(args)
    state = local.state()
    if state is None:
        print(f"no cluster under {local.layout.root}")
        return 1
    running = local.running()
    for proc in state.processes:
        verdict = "running" if running.get(proc.name) else "NOT RUNNING"
        print(f"{proc.name:<24} pid {proc.pid:<8} port {proc.port:<6} {verdict}")
    print(f"server:     {state.server} (Kubernetes {state.kubernetes_version})")
    print(f"kubeconfig: {state.kubeconfig}")
    return 0 if all(running.values()) else 1


def cmd_dev_env(args: argparse.Namespace) -> int:
    from stratus.devcluster import binaries, objectstore  # noqa: PLC0415

    local = _dev_cluster(args)
    bin_dirs = binaries.locate().search_path()
    print(f"export KUBECONFIG={local.kubeconfig}")
    print(f"export PATH={':'.join(bin_dirs)}:$PATH")
    store = objectstore.credentials(local.layout.object_store)
    if store is not None:
        print(f"export STRATUS_S3_ENDPOINT={store.endpoint}")
        print(f"export STRATUS_S3_BUCKET={store.bucket}")
        for key, value in store.env().items():
            print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_dev_preempt(args: argparse.Namespace) -> int:
    from stratus.devcluster import kubeapi  # noqa: PLC0415

    kubeconfig = args.kubeconfig or _dev_cluster(args).kubeconfig
    api = kubeapi.connect(kubeconfig)
    replacement = api.preempt(args.node, delete=not args.keep_node, replace=args.replace)
    if replacement == args.node:
        print(f"node {args.node} reclaimed; it is back as new capacity")
        return 0
    print(
        f"node {args.node} reclaimed"
        + (f"; replacement {replacement} joined" if replacement else "")
    )
    return 0


def cmd_dev_simulate(args: argparse.Namespace) -> int:
    import yaml  # noqa: PLC0415

    from stratus.devcluster import nodepools  # noqa: PLC0415

    docs = [d for path in args.files for d in yaml.safe_load_all(path.read_text()) if d]
    print(yaml.safe_dump_all([nodepools.simulated(d) for d in docs], sort_keys=False), end="")
    return 0


def cmd_crds(args: argparse.Namespace) -> int:
    from stratus.api import crd  # noqa: PLC0415

    for path in crd.write_all(args.out):
        print(f"wrote {path}")
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    import dataclasses  # noqa: PLC0415
    import os  # noqa: PLC0415

    if args.kubeconfig:
        # Before the client library is imported: it reads KUBECONFIG once, at import.
        os.environ["KUBECONFIG"] = str(args.kubeconfig)
    from stratus import config, operator  # noqa: PLC0415

    cfg = config.from_env()
    if args.namespace:
        cfg = dataclasses.replace(cfg, namespaces=tuple(args.namespace))
    if args.metrics_port is not None:
        cfg = dataclasses.replace(cfg, metrics_port=args.metrics_port)
    if args.health_port is not None:
        cfg = dataclasses.replace(cfg, health_port=args.health_port)
    operator.run(cfg, verbose=args.verbose)
    return 0


def _custom_api(args: argparse.Namespace) -> object:
    from kubernetes import client, config  # noqa: PLC0415

    api = config.new_client_from_config(
        config_file=str(args.kubeconfig) if args.kubeconfig else None
    )
    return client.CustomObjectsApi(api)


def cmd_rollout(args: argparse.Namespace) -> int:
    """Give a rollout a command through an annotation, as `kubectl annotate` would."""
    import time  # noqa: PLC0415

    from stratus.serving import labels  # noqa: PLC0415

    annotation = {
        "promote": labels.PROMOTE_FULL_ANNOTATION if args.full else labels.PROMOTE_ANNOTATION,
        "abort": labels.ABORT_ANNOTATION,
        "retry": labels.RETRY_ANNOTATION,
    }[args.command]
    api: Any = _custom_api(args)
    api.patch_namespaced_custom_object(
        "stratus.dev",
        "v1alpha1",
        args.namespace,
        "inferenceservices",
        args.name,
        {"metadata": {"annotations": {annotation: str(time.time_ns())}}},
    )
    print(f"{args.command} requested for inferenceservice {args.namespace}/{args.name}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    api: Any = _custom_api(args)
    obj = api.get_namespaced_custom_object(
        "stratus.dev", "v1alpha1", args.namespace, "inferenceservices", args.name
    )
    status = obj.get("status") or {}
    steps = obj["spec"].get("rollout", {}).get("steps") or [{"weight": 100}]
    print(f"{args.namespace}/{args.name}: {status.get('phase', 'Pending')}")
    print(f"  stable:  {status.get('stableRevision', '-')}")
    print(f"  canary:  {status.get('canaryRevision', '-')} at {status.get('canaryWeight', 0)}%")
    current = status.get("currentStep")
    for index, step in enumerate(steps):
        pause = step.get("pause")
        hold = (
            "until promoted"
            if pause is not None and not pause.get("duration")
            else (pause or {}).get("duration", "one analysis interval")
        )
        mark = "->" if index == current else "  "
        print(f"  {mark} step {index + 1}: {step['weight']}%, hold {hold}")
    for result in (status.get("lastAnalysis") or {}).get("results", []):
        print(
            f"  analysis {result['name']}: {result.get('value', 'no data')} ({result['verdict']})"
        )
    if status.get("message"):
        print(f"  {status['message']}")
    return 0


def _converted(paths: list[str]) -> list[Any]:
    from stratus.convert import dispatch, inputs  # noqa: PLC0415

    stdin = sys.stdin.read() if "-" in paths else None
    return dispatch.convert(inputs.read(paths, stdin))


# The kinds `stratus assess --cluster` lists: group, version, plural.
LIVE_KINDS = (
    ("kubeflow.org", "v1", "pytorchjobs"),
    ("kubeflow.org", "v1", "tfjobs"),
    ("kubeflow.org", "v2beta1", "mpijobs"),
    ("trainer.kubeflow.org", "v1alpha1", "trainjobs"),
    ("serving.kserve.io", "v1beta1", "inferenceservices"),
    ("argoproj.io", "v1alpha1", "rollouts"),
    ("argoproj.io", "v1alpha1", "analysistemplates"),
)


def _live_documents(kubeconfig: Path) -> list[Any]:
    """The cluster's Kubeflow, KServe and Argo objects and its GPU Jobs, as input documents."""
    from kubernetes import client, config  # noqa: PLC0415
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    from stratus.convert.inputs import Document  # noqa: PLC0415

    api = config.new_client_from_config(config_file=str(kubeconfig))
    custom = client.CustomObjectsApi(api)
    docs: list[Any] = []
    for group, version, plural in LIVE_KINDS:
        try:
            items = custom.list_cluster_custom_object(group, version, plural)["items"]
        except ApiException as exc:
            if exc.status == 404:  # that project is not installed
                continue
            raise
        docs += [Document(f"cluster:{plural}#{i}", item) for i, item in enumerate(items, 1)]
    jobs = client.BatchV1Api(api).list_job_for_all_namespaces().items
    for index, job in enumerate(jobs, 1):
        body = api.sanitize_for_serialization(job)
        body.update(apiVersion="batch/v1", kind="Job")
        if "nvidia.com/gpu" in str(body["spec"]["template"]["spec"].get("containers")):
            docs.append(Document(f"cluster:jobs#{index}", body))
    return docs


def dry_run(resources: list[dict[str, Any]], kubeconfig: Path) -> dict[str, str]:
    """Server-side dry run of each resource: its `Kind/namespace/name` and the API server's
    reason, for each one rejected."""
    import json  # noqa: PLC0415

    from kubernetes import client, config  # noqa: PLC0415
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    from stratus.convert.render import resource_key  # noqa: PLC0415

    custom = client.CustomObjectsApi(config.new_client_from_config(config_file=str(kubeconfig)))
    failures: dict[str, str] = {}
    for resource in resources:
        group, _, version = resource["apiVersion"].partition("/")
        plural = resource["kind"].lower() + "s"
        namespace = resource["metadata"].get("namespace") or "default"
        try:
            custom.create_namespaced_custom_object(
                group, version, namespace, plural, resource, dry_run="All"
            )
        except ApiException as exc:
            try:
                reason = json.loads(exc.body or "{}").get("message") or exc.reason
            except ValueError:
                reason = exc.reason
            failures[resource_key(resource)] = str(reason)
    return failures


def _write_resources(conversions: list[Any], out: str) -> None:
    import yaml  # noqa: PLC0415

    resources = [r for c in conversions for r in c.resources]
    if out == "-":
        sys.stdout.write(yaml.safe_dump_all(resources, sort_keys=False))
        return
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    for resource in resources:
        path = directory / f"{resource['kind'].lower()}-{resource['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(resource, sort_keys=False))


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert; write the resources (to -o), the report (to stderr when the resources go to
    stdout); fail when a document could not be converted or a resource failed the dry run."""
    from stratus.convert import render  # noqa: PLC0415

    conversions = _converted(args.paths)
    failures = None
    if args.dry_run_against:
        failures = dry_run([r for c in conversions for r in c.resources], args.dry_run_against)
    if args.out:
        _write_resources(conversions, args.out)
    report = (
        render.as_json(conversions, failures)
        if args.report == "json"
        else render.as_text(conversions, failures)
    )
    (sys.stderr if args.out == "-" else sys.stdout).write(
        report if report.endswith("\n") else report + "\n"
    )
    failed = any(c.error for c in conversions) or bool(failures)
    return 1 if failed else 0


def cmd_assess(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from stratus.convert import assess, dispatch  # noqa: PLC0415

    try:
        prices = assess.load_prices(args.prices.read_text(), str(args.prices))
    except (OSError, assess.PriceFileError) as exc:
        raise RuntimeError(str(exc)) from None
    conversions = _converted(args.paths) if args.paths else []
    if args.cluster:
        conversions += dispatch.convert(_live_documents(args.cluster))
    if not conversions:
        raise RuntimeError("nothing to assess: give paths, - for stdin, or --cluster")
    result = assess.assess(conversions, prices)
    if args.output == "json":
        print(json.dumps(assess.as_json(result), indent=2))
    else:
        print(assess.render_markdown(result), end="")
    return 0


def _validation_stanza(args: argparse.Namespace) -> tuple[list[Any], float, bool]:
    """The comparators, minAgreement and noiseFloor of `stratus validate`: from --spec (a
    validation stanza, or an InferenceService with one) or --compare, with the flags on top."""
    import yaml  # noqa: PLC0415

    from stratus.api.validation import Comparator  # noqa: PLC0415

    stanza: dict[str, Any] = {}
    if args.spec:
        document = yaml.safe_load(args.spec.read_text()) or {}
        if not isinstance(document, dict):
            raise ValueError(f"{args.spec}: not a YAML mapping")
        if document.get("kind") == "InferenceService":
            document = ((document.get("spec") or {}).get("rollout") or {}).get("validation")
        elif "validation" in document:
            document = document["validation"]
        if not isinstance(document, dict) or not document.get("comparators"):
            raise ValueError(f"{args.spec}: no validation stanza with comparators")
        stanza = document
    comparators = [Comparator.model_validate(c) for c in stanza.get("comparators", [])]
    for text in args.compare:
        kind, _, fields = text.partition(":")
        if kind == "hook":
            raise ValueError("--compare: a hook comparator needs --spec (its url)")
        comparators.append(
            Comparator(name=kind.lower(), type=kind, fields=[f for f in fields.split(",") if f])
        )
    if not comparators:
        raise ValueError("give --spec FILE or --compare TYPE:FIELD[,FIELD]")
    if len({c.name for c in comparators}) != len(comparators):
        raise ValueError("comparator names must be unique (--compare names each by its type)")
    min_agreement = args.min_agreement
    if min_agreement is None:
        min_agreement = float(stanza.get("minAgreement", 0.99))
    noise_floor = bool(stanza.get("noiseFloor", True)) and not args.no_noise_floor
    return comparators, min_agreement, noise_floor


def cmd_validate(args: argparse.Namespace) -> int:
    """Replay a request set against a baseline and a candidate: 0 passed, 1 failed, 2 bad input."""
    import yaml  # noqa: PLC0415

    from stratus.validation import client, run  # noqa: PLC0415

    try:
        comparators, min_agreement, noise_floor = _validation_stanza(args)
        headers = {}
        for pair in args.header:
            name, sep, value = pair.partition("=")
            if not sep or not name:
                raise ValueError("--header: give NAME=VALUE")
            headers[name] = value
        ca_file = str(args.ca_file) if args.ca_file else None
        report = run.check(
            comparators,
            baseline=client.Endpoint(args.baseline, headers, ca_file),
            candidate=client.Endpoint(args.candidate, headers, ca_file),
            requests=args.requests,
            min_agreement=min_agreement,
            noise_floor=noise_floor,
        )
    except (ValueError, OSError, yaml.YAMLError) as exc:
        print(f"stratus validate: {exc}", file=sys.stderr)
        return 2
    print(report.to_json(1 << 20) if args.output == "json" else report.render())
    return 0 if report.verdict == "Passed" else 1


def _migration_commands(sub: Any) -> None:
    """`stratus convert`, `stratus assess` and `stratus validate`."""
    convert = sub.add_parser(
        "convert",
        help="convert Kubeflow, KServe, Argo Rollouts and Slurm workloads into Stratus resources",
    )
    convert.add_argument("paths", nargs="+", help="files, directories, or - for stdin")
    convert.add_argument(
        "-o",
        "--out",
        default=None,
        help="write the resources to this directory, or to stdout with - (the report then goes "
        "to stderr)",
    )
    convert.add_argument("--report", choices=("text", "json"), default="text")
    convert.add_argument(
        "--dry-run-against",
        type=Path,
        default=None,
        metavar="KUBECONFIG",
        help="check every resource with a server-side dry run against this cluster's CRDs",
    )
    convert.set_defaults(func=cmd_convert)

    assess_parser = sub.add_parser(
        "assess",
        help="per workload: migration strategy, GPU needs, spot suitability, monthly cost",
    )
    assess_parser.add_argument("paths", nargs="*", help="files, directories, or - for stdin")
    assess_parser.add_argument(
        "--prices", type=Path, required=True, help="price file (YAML or JSON): gpuHour per type"
    )
    assess_parser.add_argument(
        "--cluster",
        type=Path,
        default=None,
        metavar="KUBECONFIG",
        help="also assess this cluster's Kubeflow, KServe and Argo Rollouts objects and GPU Jobs",
    )
    assess_parser.add_argument("--output", choices=("markdown", "json"), default="markdown")
    assess_parser.set_defaults(func=cmd_assess)

    validate = sub.add_parser(
        "validate",
        help="replay recorded requests to a baseline and a candidate and compare the answers "
        "(exit 0 passed, 1 failed, 2 bad input)",
    )
    validate.add_argument("--baseline", required=True, help="the baseline's prediction URL")
    validate.add_argument("--candidate", required=True, help="the candidate's prediction URL")
    validate.add_argument(
        "--requests",
        type=Path,
        required=True,
        help='JSON lines: bodies, or {"request", "expected"}',
    )
    validate.add_argument(
        "--spec",
        type=Path,
        default=None,
        help="YAML of a validation stanza, or an InferenceService with spec.rollout.validation",
    )
    validate.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="TYPE:FIELD[,FIELD]",
        help="a comparator (exact, numeric, label, topK), named by its type (repeatable)",
    )
    validate.add_argument("--min-agreement", type=float, default=None)
    validate.add_argument(
        "--no-noise-floor", action="store_true", help="ask the baseline once per request"
    )
    validate.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="sent to both (repeatable); never printed",
    )
    validate.add_argument("--ca-file", type=Path, default=None, help="PEM CAs for https")
    validate.add_argument("-o", "--output", choices=("text", "json"), default="text")
    validate.set_defaults(func=cmd_validate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stratus", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    op = sub.add_parser("operator", help="run the operator (configured by STRATUS_* variables)")
    op.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="cluster to run against (default: in-cluster, then KUBECONFIG)",
    )
    op.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; default: all)",
    )
    op.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="port of /metrics (default 8080)",
    )
    op.add_argument(
        "--health-port",
        type=int,
        default=None,
        help="port of /healthz, the liveness probe (default: the metrics port + 1)",
    )
    op.add_argument("--verbose", action="store_true", help="debug logging")
    op.set_defaults(func=cmd_operator)

    for name, text in (
        ("promote", "advance a canary one step (--full: promote now)"),
        ("abort", "roll a canary back"),
        ("retry", "try a rolled-back revision again"),
        ("status", "show where a rollout stands"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("name", help="InferenceService name")
        command.add_argument("-n", "--namespace", default="default")
        command.add_argument("--kubeconfig", type=Path, default=None)
        if name == "promote":
            command.add_argument("--full", action="store_true", help="skip remaining steps")
        command.set_defaults(func=cmd_status if name == "status" else cmd_rollout, full=False)

    _migration_commands(sub)

    crds = sub.add_parser("crds", help="generate the CRDs from the API models")
    crds.add_argument("--out", type=Path, default=Path("crds"), help="output directory")
    crds.set_defaults(func=cmd_crds)

    dev = sub.add_parser("dev", help="the local control plane with simulated GPU nodes")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)

    def dev_command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = dev_sub.add_parser(name, help=help_text)
        p.add_argument(
            "--state-dir",
            type=Path,
            default=Path(".stratus"),
            help="where the cluster keeps its data, logs and kubeconfig",
        )
        return p

    up = dev_command("up", "start the cluster (or reuse a running one) and wait until ready")
    up.add_argument(
        "--pools",
        type=Path,
        default=None,
        help="YAML file of node pools (default: gpu-ondemand, gpu-spot, cpu)",
    )
    up.add_argument(
        "--attach",
        type=Path,
        default=None,
        metavar="KUBECONFIG",
        help="add only kwok and the node pools to this existing cluster (kind)",
    )
    up.add_argument(
        "--no-real-node",
        dest="real_node",
        action="store_false",
        help="simulated nodes only (by default, on Linux as root, a real kubelet joins too)",
    )
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    up.set_defaults(func=cmd_dev_up)
    dev_command("down", "stop every process of the cluster").set_defaults(func=cmd_dev_down)
    dev_command("status", "say what runs").set_defaults(func=cmd_dev_status)
    dev_command("env", 'print shell exports for kubectl: eval "$(stratus dev env)"').set_defaults(
        func=cmd_dev_env
    )
    preempt = dev_command("preempt", "reclaim a node the way a cloud reclaims a spot node")
    preempt.add_argument("node")
    preempt.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="act on this cluster instead of the one under --state-dir",
    )
    preempt.add_argument(
        "--keep-node",
        action="store_true",
        help="taint the node NoExecute but leave the Node object",
    )
    preempt.add_argument(
        "--replace", action="store_true", help="bring up a new node of the same pool afterwards"
    )
    preempt.set_defaults(func=cmd_dev_preempt)
    simulate = dev_sub.add_parser(
        "simulate",
        help="print TrainingJobs and InferenceServices made to run on the simulated pools "
        "(for kubectl apply -f -)",
    )
    simulate.add_argument("files", nargs="+", type=Path)
    simulate.set_defaults(func=cmd_dev_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except RuntimeError as exc:
        print(f"stratus: {exc}", file=sys.stderr)
        return 1
    except extras.MissingExtraError as exc:
        print(f"stratus: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
