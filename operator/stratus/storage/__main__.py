"""`python -m stratus.storage fetch --uri URI --dest DIR [--sha256 HEX] [--ca-file PEM]`."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from stratus.storage import PVC_ROOT, StagingError, fetch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stratus.storage")
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("fetch", help="stage a model into a directory")
    get.add_argument("--uri", required=True)
    get.add_argument("--dest", type=Path, required=True)
    get.add_argument("--sha256", default=None)
    get.add_argument("--pvc-root", type=Path, default=PVC_ROOT)
    get.add_argument(
        "--ca-file", type=Path, default=None, help="PEM CAs an https:// server must chain to"
    )
    get.add_argument("--termination-log", type=Path, default=Path("/dev/termination-log"))
    args = parser.parse_args(argv)
    try:
        staged = fetch(args.uri, args.dest, args.sha256, args.pvc_root, args.ca_file)
    except StagingError as exc:
        print(f"model staging failed: {exc}", file=sys.stderr)
        # The pod's status carries the reason; the InferenceService's condition quotes it.
        with contextlib.suppress(OSError):
            args.termination_log.write_text(f"model staging failed: {exc}")
        return 1
    print(f"staged {args.uri} at {staged}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
