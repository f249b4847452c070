"""Rollout commands: `stratus promote|abort|retry NAME`, which annotate the InferenceService as
`kubectl annotate` would, and `stratus rollout status NAME [--watch]`, whose exit code says how
the rollout ended."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from stratus.cli import render
from stratus.cli.render import INFERENCESERVICE, NOT_SETTLED, Obj
from stratus.serving import labels

# Seconds between two reads while `rollout status --watch` waits.
POLL_INTERVAL = 2.0
# Exit code of `rollout status` when the InferenceService cannot be read at all: a script must
# not take a typo or an unreachable cluster for a rollback (1).
UNREADABLE = 4


def connect(args: argparse.Namespace) -> Any:
    from stratus.cli.cluster import Cluster  # noqa: PLC0415

    return Cluster(args.kubeconfig, args.namespace)


def cmd_command(args: argparse.Namespace) -> int:
    """Give a rollout a command through an annotation; the operator acts once per new value."""
    annotation = {
        "promote": labels.PROMOTE_FULL_ANNOTATION if args.full else labels.PROMOTE_ANNOTATION,
        "abort": labels.ABORT_ANNOTATION,
        "retry": labels.RETRY_ANNOTATION,
    }[args.command]
    _, name = render.target(args.name, INFERENCESERVICE)
    cluster = connect(args)
    obj = cluster.patch(
        INFERENCESERVICE,
        name,
        {"metadata": {"annotations": {annotation: str(time.time_ns())}}},
    )
    if args.output != "text":
        sys.stdout.write(render.dump(obj, args.output))
        return 0
    print(f"{args.command} requested for inferenceservice {cluster.namespace}/{name}")
    return 0


def watch(
    fetch: Callable[[], Obj],
    timeout: float,
    emit: Callable[[str], None],
    interval: float = POLL_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, Obj]:
    """Reads the InferenceService until its rollout settles or `timeout` seconds pass (0: one
    read): the exit code and the last object read. Each change of where it stands is emitted as
    one line. A read that fails after the first is reported and tried again: an API server
    restart does not end a long wait."""
    deadline = clock() + timeout
    obj = fetch()
    last = ""
    while True:
        line = render.progress(obj)
        if line != last:
            emit(line)
            last = line
        outcome = render.rollout_outcome(obj)
        if outcome is not None:
            return outcome, obj
        remaining = deadline - clock()
        if remaining <= 0:
            return NOT_SETTLED, obj
        sleep(min(interval, remaining))
        try:
            obj = fetch()
        except RuntimeError as exc:
            emit(f"could not read it, trying again: {exc}")
            last = ""


def cmd_rollout_status(args: argparse.Namespace) -> int:
    """0 healthy (promoted), 1 rolled back, 2 paused for a person, 3 not settled in time,
    4 unreadable."""
    try:
        timeout = render.seconds(args.timeout) if args.watch else 0.0
        _, name = render.target(args.name, INFERENCESERVICE)
        cluster = connect(args)
        structured = args.output != "text"
        progress_to = sys.stderr if structured else sys.stdout

        def emit(line: str) -> None:
            print(line, file=progress_to, flush=True)

        code, obj = watch(lambda: cluster.get(INFERENCESERVICE, name), timeout, emit)
    except (RuntimeError, ValueError) as exc:
        print(f"stratus rollout status: {exc}", file=sys.stderr)
        return UNREADABLE
    if structured:
        result = {
            "name": name,
            "namespace": cluster.namespace,
            "result": render.OUTCOMES[code],
            "exitCode": code,
            "status": obj.get("status") or {},
        }
        sys.stdout.write(render.dump(result, args.output))
    else:
        sys.stdout.write(render.render_rollout(obj))
        print(render.OUTCOMES[code] + ("" if args.watch or code != NOT_SETTLED else " (yet)"))
    return code


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    for name, text in (
        ("promote", "advance a canary one step (--full: promote now)"),
        ("abort", "roll a canary back"),
        ("retry", "try a rolled-back revision again"),
    ):
        command = sub.add_parser(name, help=text, parents=[common])
        command.add_argument("name", help="InferenceService name")
        command.add_argument("-o", "--output", choices=render.OUTPUTS, default="text")
        if name == "promote":
            command.add_argument("--full", action="store_true", help="skip remaining steps")
        command.set_defaults(func=cmd_command, full=False)

    rollout = sub.add_parser("rollout", help="an InferenceService's rollout")
    rollout_sub = rollout.add_subparsers(dest="rollout_command", required=True)
    status = rollout_sub.add_parser(
        "status",
        parents=[common],
        help="where the rollout stands; exit 0 healthy, 1 rolled back, 2 paused for a person, "
        "3 not settled (within --timeout with --watch), 4 cannot be read",
    )
    status.add_argument("name", help="InferenceService name")
    status.add_argument(
        "-w", "--watch", action="store_true", help="wait until it settles, printing progress"
    )
    status.add_argument(
        "--timeout", default="10m", help="how long --watch waits (90s, 10m, 1h; default 10m)"
    )
    status.add_argument("-o", "--output", choices=render.OUTPUTS, default="text")
    status.set_defaults(func=cmd_rollout_status)
