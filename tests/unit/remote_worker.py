"""A training process for the object-storage tests (test_sdk_remote.py): resumes with the SDK
(STRATUS_CHECKPOINT_URI and the AWS_* variables say where the bucket is), checks that what it
loaded is exactly what its step wrote, saves the steps it is given (waiting for each upload
with --flush), then either exits, waits for a signal, or saves every --every seconds. On SIGTERM
it saves the next step. Its journal records `resumed N`, `saved N` and `uploaded N`; its
termination message is the journal's path with the suffix .log.

Exit code 3: it resumed from a checkpoint whose contents are not what that step wrote.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from stratus.sdk import Checkpoint, CheckpointManager
from tests.unit.checkpoint_worker import CORRUPT_EXIT_CODE, check_checkpoint, write_state


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--journal", type=Path, required=True)
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--keep", type=int, default=2)
    parser.add_argument("--size", type=int, default=4096, help="bytes of state per step")
    parser.add_argument("--big-step", type=int, default=-1, help="the step with --big-size")
    parser.add_argument("--big-size", type=int, default=0)
    parser.add_argument("--saves", default="", help="steps to save, comma-separated")
    parser.add_argument("--flush", action="store_true", help="wait for each upload")
    parser.add_argument("--then", choices=("exit", "wait", "loop"), default="exit")
    parser.add_argument("--every", type=float, default=0.2, help="seconds between saves (loop)")
    args = parser.parse_args()

    def size(step: int) -> int:
        return int(args.big_size if step == args.big_step else args.size)

    journal = args.journal.open("a", buffering=1)
    ckpts = CheckpointManager(
        args.dir,
        keep=args.keep,
        termination_log=args.journal.with_suffix(".log"),
        rank=0,
        world_size=1,
        attempt=args.attempt,
    )
    step = 0
    point = ckpts.resume_point()
    if point is not None:
        problem = check_checkpoint(point, size(point.step))
        if problem is not None:
            print(problem, file=sys.stderr)
            return CORRUPT_EXIT_CODE
        step = point.step
    journal.write(f"resumed {step}\n")

    def save(at: int) -> Checkpoint | None:
        saved = ckpts.save(at, lambda d: write_state(d, at, 0, args.attempt, size(at)))
        journal.write(f"saved {at}\n")
        return saved

    ckpts.on_sigterm(lambda: save(step + 1))
    for at in [int(s) for s in args.saves.split(",") if s]:
        step = at
        save(at)
        if args.flush:
            ckpts.flush()
            journal.write(f"uploaded {at}\n")
    if args.then == "wait":
        while True:
            time.sleep(1)
    while args.then == "loop":
        time.sleep(args.every)
        step += 10
        save(step)
    ckpts.flush()
    return 0


if __name__ == "__main__":
    os.environ.pop("STRATUS_RESUME_FROM", None)
    sys.exit(main())
