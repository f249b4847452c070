"""`stratus convert`, `stratus assess` and `stratus validate`: moving workloads to Stratus."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


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


def add_commands(sub: Any) -> None:
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
