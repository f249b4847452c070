"""`python -m stratus.validation run|relay`: the validator pod's two containers."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from stratus.validation import run

TERMINATION_LOG = Path("/dev/termination-log")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stratus.validation", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="replay, then the shadow proxy until SIGTERM (STRATUS_* variables)")
    relay = sub.add_parser("relay", help="wait for the report and copy it to the termination log")
    relay.add_argument("--report", type=Path, required=True, help="the report file to wait for")
    relay.add_argument("--to", type=Path, default=TERMINATION_LOG, help="where to copy it")
    relay.add_argument(
        "--timeout", type=float, default=None, help="seconds to wait (default: until killed)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "relay":
        return run.relay(args.report, args.to, timeout_s=args.timeout)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return run.run(os.environ, stop)


if __name__ == "__main__":
    sys.exit(main())
