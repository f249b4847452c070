"""`python -m stratus.storage fetch --uri URI --dest DIR [--max-size SIZE] [--sha256 HEX]
[--ca-file PEM] [--endpoint URL]`, and `python -m stratus.storage manifest DIR`, which writes the
stratus-manifest.json a directory model in object storage needs. Any failure, expected or not,
ends as one line on stderr and in the termination message (the pod's status carries it; the
InferenceService's condition quotes it) and exit code 1, never a traceback. The line never holds
a credential: URIs are redacted, and the values of the credential variables are masked."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import NoReturn

from stratus.storage import PVC_ROOT, StagingError, fetch, s3, size_bytes
from stratus.storage.redact import mask, redact

TERMINATION_LOG = "/dev/termination-log"
# The kubelet keeps 4096 bytes of a termination message; a reason needs far fewer.
MAX_REASON = 1024
# Whatever a client library puts in an error, these values never reach the termination log.
SECRET_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise StagingError(f"bad arguments: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m stratus.storage")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    get = sub.add_parser("fetch", help="stage a model into a directory")
    get.add_argument("--uri", required=True)
    get.add_argument("--dest", type=Path, required=True)
    get.add_argument("--sha256", default=None)
    get.add_argument("--pvc-root", type=Path, default=PVC_ROOT)
    get.add_argument(
        "--ca-file", type=Path, default=None, help="PEM CAs an https:// server must chain to"
    )
    get.add_argument(
        "--max-size", type=size_bytes, default=None, help="abort past this size, e.g. 100Gi"
    )
    get.add_argument(
        "--endpoint", help="the S3-compatible store of an s3:// or gs:// model (AWS_ENDPOINT_URL)"
    )
    get.add_argument(
        "--termination-log",
        type=Path,
        default=Path(os.environ.get("STRATUS_TERMINATION_LOG", TERMINATION_LOG)),
    )
    manifest = sub.add_parser(
        "manifest", help=f"write {s3.MANIFEST} (every file's size and sha256) into a directory"
    )
    manifest.add_argument("directory", type=Path)
    return parser


def reason(exc: BaseException) -> str:
    """One line that says why staging failed, with every URI in it redacted and the values of
    the credential variables masked."""
    what = str(exc) if isinstance(exc, StagingError) else f"{type(exc).__name__}: {exc}"
    secrets = [os.environ.get(name, "") for name in SECRET_VARIABLES]
    line = " ".join(mask(redact(f"model staging failed: {what}"), secrets).split())
    return line[:MAX_REASON]


def main(argv: list[str] | None = None) -> int:
    log = Path(os.environ.get("STRATUS_TERMINATION_LOG", TERMINATION_LOG))
    try:
        args = _parser().parse_args(argv)
        if args.command == "manifest":
            print(f"wrote {s3.write_manifest(args.directory)}")
            return 0
        log = args.termination_log
        staged = fetch(
            args.uri,
            args.dest,
            args.sha256,
            args.pvc_root,
            args.ca_file,
            args.max_size,
            args.endpoint,
        )
    except Exception as exc:  # noqa: BLE001 - every failure is a reason, never a traceback
        line = reason(exc)
        print(line, file=sys.stderr)
        with contextlib.suppress(OSError):
            log.write_text(line)
        return 1
    print(redact(f"staged {args.uri} at {staged}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
