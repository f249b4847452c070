"""Commands that read or change TrainingJobs and InferenceServices: `get`, `describe`, `status`,
`suspend`, `resume` and `logs`. Each reads through `cluster.Cluster` and prints what `render`
makes of it."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from stratus.cli import render
from stratus.cli.render import INFERENCESERVICE, KINDS, TRAININGJOB, Kind, Obj
from stratus.cli.rollout import connect
from stratus.serving.labels import INFERENCESERVICE_LABEL, REVISION_LABEL, WAKE_ANNOTATION
from stratus.training.labels import ATTEMPT_LABEL, TRAININGJOB_LABEL

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_get(words: list[str]) -> tuple[Kind | None, str | None]:
    """`get`'s words: nothing (both kinds), KIND, KIND NAME, KIND/NAME, or NAME (either kind)."""
    if len(words) > 2:
        raise ValueError("give at most a kind and a name")
    if len(words) == 2:
        return render.kind_named(words[0]), words[1]
    if not words:
        return None, None
    if "/" in words[0]:
        return render.target(words[0])
    try:
        return render.kind_named(words[0]), None
    except ValueError:
        return None, words[0]


def _target(words: list[str]) -> tuple[Kind | None, str]:
    """`describe` and `status`: NAME, KIND NAME or KIND/NAME."""
    kind, name = parse_get(words)
    if name is None:
        raise ValueError("give a name: NAME, KIND NAME or KIND/NAME")
    return kind, name


def cmd_get(args: argparse.Namespace) -> int:
    kind, name = parse_get(args.words)
    cluster = connect(args)
    if name is not None:
        found_kind, obj = cluster.find(name, kind)
        if args.output != "text":
            sys.stdout.write(render.dump(obj, args.output))
        else:
            sys.stdout.write(render.get_table(found_kind, [obj], _now(), False, False))
        return 0
    kinds = [kind] if kind else list(KINDS)
    listed = [(k, cluster.list_all(k, args.all_namespaces)) for k in kinds]
    if args.output != "text":
        sys.stdout.write(
            render.dump(render.as_list([o for _, objs in listed for o in objs]), args.output)
        )
        return 0
    tables = [
        render.get_table(k, objs, _now(), args.all_namespaces, prefixed=kind is None)
        for k, objs in listed
        if objs
    ]
    if not tables:
        where = "any namespace" if args.all_namespaces else f"namespace {cluster.namespace}"
        print(
            f"no {kind.plural if kind else 'trainingjobs or inferenceservices'} in {where}",
            file=sys.stderr,
        )
        return 0
    sys.stdout.write("\n".join(tables))
    return 0


def _related(cluster: Any, kind: Kind, obj: Obj) -> tuple[list[Obj], Any]:
    """A resource's Events, and what else describe shows: its attempts or its revisions."""
    events = cluster.events(obj)
    name = obj["metadata"]["name"]
    if kind is TRAININGJOB:
        jobs = cluster.jobs(f"{TRAININGJOB_LABEL}={name}")
        return events, render.attempt_timeline(obj, events, jobs)
    return events, cluster.deployments(f"{INFERENCESERVICE_LABEL}={name}")


def cmd_describe(args: argparse.Namespace) -> int:
    kind, name = _target(args.words)
    cluster = connect(args)
    kind, obj = cluster.find(name, kind)
    events, related = _related(cluster, kind, obj)
    if args.output != "text":
        document: Obj = {"object": obj, "events": events}
        if kind is TRAININGJOB:
            document["attempts"] = [a.as_json() for a in related]
        else:
            document["revisions"] = related
        sys.stdout.write(render.dump(document, args.output))
    elif kind is TRAININGJOB:
        sys.stdout.write(render.describe_trainingjob(obj, related, events, _now()))
    else:
        sys.stdout.write(render.describe_inferenceservice(obj, related, events, _now()))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """A rollout's state, or a TrainingJob's attempts; -o json|yaml: the status as it is."""
    kind, name = _target(args.words)
    cluster = connect(args)
    kind, obj = cluster.find(name, kind)
    if args.output != "text":
        sys.stdout.write(render.dump(obj.get("status") or {}, args.output))
    elif kind is INFERENCESERVICE:
        sys.stdout.write(render.render_rollout(obj))
    else:
        events = cluster.events(obj)
        jobs = cluster.jobs(f"{TRAININGJOB_LABEL}={name}")
        meta, status = obj["metadata"], obj.get("status") or {}
        print(f"{meta['namespace']}/{name}: {status.get('phase') or 'Pending'}")
        if status.get("message"):
            print(f"  {status['message']}")
        sys.stdout.write(render.render_timeline(render.attempt_timeline(obj, events, jobs), _now()))
    return 0


def cmd_suspend(args: argparse.Namespace) -> int:
    """Set spec.suspend, which the operator acts on: the active attempt ends without counting,
    and resuming starts the next one from the latest checkpoint."""
    suspend = args.command == "suspend"
    # resume also wakes an InferenceService (infs/NAME); suspend is a TrainingJob's only.
    kind, name = render.target(args.name, TRAININGJOB if suspend else None)
    cluster = connect(args)
    if kind is INFERENCESERVICE:
        return _wake(args, cluster, name)
    obj = cluster.patch(TRAININGJOB, name, {"spec": {"suspend": suspend}})
    if args.output != "text":
        sys.stdout.write(render.dump(obj, args.output))
        return 0
    done = (
        "suspended: its active attempt stops, uncounted"
        if suspend
        else "resumed: the next attempt starts from the latest checkpoint"
    )
    print(f"trainingjob {cluster.namespace}/{name} {done}")
    return 0


def _wake(args: argparse.Namespace, cluster: Any, name: str) -> int:
    """`resume infs/NAME`: wake an InferenceService idle reclamation scaled to zero (the wake
    annotation, acted on once per new value). Off-hours end on their own schedule."""
    obj = cluster.patch(
        INFERENCESERVICE,
        name,
        {"metadata": {"annotations": {WAKE_ANNOTATION: str(time.time_ns())}}},
    )
    if args.output != "text":
        sys.stdout.write(render.dump(obj, args.output))
        return 0
    print(f"inferenceservice {cluster.namespace}/{name}: wake-up requested")
    return 0


def log_pods(kind: Kind, obj: Obj, attempt: int | None, revision: str | None) -> tuple[str, str]:
    """The label selector of the pods whose logs `logs` prints, and what they are, in words:
    a TrainingJob's attempt (the latest by default), or an InferenceService's revision (the
    stable one by default)."""
    name = obj["metadata"]["name"]
    status = obj.get("status") or {}
    if kind is TRAININGJOB:
        if revision is not None:
            raise ValueError("--revision is for an InferenceService; a TrainingJob has --attempt")
        number = attempt if attempt is not None else status.get("attempt")
        if not number:
            raise ValueError(f"trainingjob {name} has not started an attempt yet")
        return f"{TRAININGJOB_LABEL}={name},{ATTEMPT_LABEL}={number}", f"attempt {number}"
    if attempt is not None:
        raise ValueError("--attempt is for a TrainingJob; an InferenceService has --revision")
    chosen = revision or status.get("stableRevision")
    if not chosen:
        raise ValueError(f"inferenceservice {name} has no stable revision yet")
    return f"{INFERENCESERVICE_LABEL}={name},{REVISION_LABEL}={chosen}", f"revision {chosen}"


def no_pods(kind: Kind, obj: Obj, what: str, attempt: int | None) -> str:
    """Why there is no log to show."""
    status = obj.get("status") or {}
    name = obj["metadata"]["name"]
    current = status.get("attempt")
    if kind is TRAININGJOB and attempt is not None and current and attempt < current:
        return (
            f"{what} of trainingjob {name} has no pods left: an ended attempt's Job is deleted "
            f"once the next one starts (current: attempt {current})"
        )
    return (
        f"{what} of {kind.singular} {name} has no pods (phase {status.get('phase') or 'Pending'})"
    )


def container_of(pod: Obj, asked: str | None) -> str:
    if asked:
        return asked
    meta = pod.get("metadata") or {}
    default = (meta.get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
    if default:
        return str(default)
    return str(pod["spec"]["containers"][0]["name"])


def cmd_logs(args: argparse.Namespace) -> int:
    kind, name = render.target(args.name)
    cluster = connect(args)
    kind, obj = cluster.find(name, kind)
    selector, what = log_pods(kind, obj, args.attempt, args.revision)
    pods = sorted(cluster.pods(selector), key=lambda p: p["metadata"]["name"])
    if not pods:
        raise RuntimeError(no_pods(kind, obj, what, args.attempt))
    prefixed = len(pods) > 1 or args.prefix
    streams = [
        (
            f"[{p['metadata']['name']}] " if prefixed else "",
            cluster.log(
                p["metadata"]["name"], container_of(p, args.container), args.follow, args.tail
            ),
        )
        for p in pods
    ]
    if args.follow and len(streams) > 1:
        _interleave(streams)
    else:
        for prefix, lines in streams:
            for line in lines:
                print(prefix + line, flush=args.follow)
    return 0


def _interleave(streams: list[tuple[str, Iterator[str]]]) -> None:
    """Follows several pods at once (every worker of an attempt), a line at a time each."""
    lock = threading.Lock()
    failures: list[str] = []

    def pump(prefix: str, lines: Iterator[str]) -> None:
        try:
            for line in lines:
                with lock:
                    print(prefix + line, flush=True)
        except RuntimeError as exc:
            failures.append(str(exc))

    threads = [threading.Thread(target=pump, args=s, daemon=True) for s in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError("; ".join(failures))


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("-o", "--output", choices=render.OUTPUTS, default="text")

    get = sub.add_parser(
        "get",
        parents=[common, output],
        help="list TrainingJobs and InferenceServices: get [KIND] [NAME]",
    )
    get.add_argument(
        "words", nargs="*", metavar="KIND|NAME", help="tj, infs, KIND NAME, KIND/NAME or NAME"
    )
    get.add_argument("-A", "--all-namespaces", action="store_true")
    get.set_defaults(func=cmd_get)

    describe = sub.add_parser(
        "describe",
        parents=[common, output],
        help="everything about one resource: a TrainingJob's attempts, an InferenceService's "
        "rollout and revisions, conditions, Events",
    )
    describe.add_argument("words", nargs="+", metavar="[KIND] NAME")
    describe.set_defaults(func=cmd_describe)

    status = sub.add_parser(
        "status",
        parents=[common, output],
        help="where a rollout stands (an InferenceService) or its attempts (a TrainingJob)",
    )
    status.add_argument("words", nargs="+", metavar="[KIND] NAME")
    status.set_defaults(func=cmd_status)

    for name, text in (
        ("suspend", "stop a TrainingJob's active attempt, uncounted (spec.suspend: true)"),
        (
            "resume",
            "start a suspended TrainingJob's next attempt from its latest checkpoint, or wake "
            "an InferenceService that idle reclamation scaled to zero (infs/NAME)",
        ),
    ):
        command = sub.add_parser(name, parents=[common, output], help=text)
        command.add_argument("name", help="TrainingJob name, or infs/NAME to resume")
        command.set_defaults(func=cmd_suspend)

    logs = sub.add_parser(
        "logs",
        parents=[common],
        help="a TrainingJob attempt's logs (the latest by default), or an InferenceService "
        "revision's (the stable one by default)",
    )
    logs.add_argument("name", help="NAME, tj/NAME or infs/NAME")
    logs.add_argument("--attempt", type=int, default=None, help="TrainingJob: this attempt")
    logs.add_argument("--revision", default=None, help="InferenceService: this revision")
    logs.add_argument("-c", "--container", default=None, help="default: the pod's first")
    logs.add_argument("-f", "--follow", action="store_true", help="stream until they end")
    logs.add_argument("--tail", type=int, default=None, help="the last N lines of each pod")
    logs.add_argument(
        "--prefix", action="store_true", help="name the pod on each line (always with several)"
    )
    logs.set_defaults(func=cmd_logs)
