"""A training process for the kill tests (test_checkpoint_kills.py): resumes with the SDK, checks
that what it loaded is whole, steps, saves every few steps and on SIGTERM, and keeps a journal of
what it reached and what it saved, which the test holds against what it finds afterwards.

Exit code 3: it resumed from a checkpoint whose contents are not what that step wrote.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from stratus.sdk import Checkpoint, CheckpointManager

STATE = "state.bin"
CORRUPT_EXIT_CODE = 3


def payload(step: int, rank: int, size: int) -> bytes:
    block = hashlib.sha256(f"{step}/{rank}".encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def write_state(directory: Path, step: int, rank: int, attempt: int, size: int) -> None:
    """Header line, then the payload in small writes, so a kill can land in the middle."""
    body = payload(step, rank, size)
    with (directory / STATE).open("wb") as handle:
        header = {"step": step, "rank": rank, "attempt": attempt}
        handle.write(json.dumps(header).encode() + b"\n")
        for start in range(0, len(body), 4096):
            handle.write(body[start : start + 4096])


def check_state(path: Path, step: int, rank: int, size: int) -> dict[str, int] | None:
    """The header of a state file if its contents are exactly what `step` wrote."""
    raw = path.read_bytes()
    head, _, body = raw.partition(b"\n")
    header: dict[str, int] = json.loads(head)
    if header["step"] != step or header["rank"] != rank or body != payload(step, rank, size):
        return None
    return header


def check_checkpoint(checkpoint: Checkpoint, size: int) -> str | None:
    """Why `checkpoint` is not whole, or None: every shard is exactly what its step wrote, and
    all shards come from the same attempt."""
    ranks = range(checkpoint.shards) if checkpoint.shards else [0]
    attempts = set()
    for rank in ranks:
        directory = checkpoint.path / f"rank-{rank:05d}" if checkpoint.shards else checkpoint.path
        header = check_state(directory / STATE, checkpoint.step, rank, size)
        if header is None:
            return f"{directory} does not hold step {checkpoint.step}"
        attempts.add(header["attempt"])
    if len(attempts) > 1:
        return f"{checkpoint.path} mixes shards of attempts {sorted(attempts)}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--journal", type=Path, required=True)
    parser.add_argument("--sharded", action="store_true")
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--world-size", type=int, default=1)
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--save-every", type=int, default=10)
    parser.add_argument("--step-seconds", type=float, default=0.002)
    parser.add_argument("--start-at", type=float, default=0.0, help="time.time() of the first step")
    parser.add_argument("--size", type=int, default=65536)
    args = parser.parse_args()

    journal = args.journal.open("a", buffering=1)
    ckpts = CheckpointManager(
        args.dir,
        keep=2,
        termination_log=args.journal.with_suffix(".termination-log"),
        sharded=args.sharded,
        rank=args.rank,
        world_size=args.world_size,
        attempt=args.attempt,
    )
    step = 0
    point = ckpts.resume_point()
    if point is not None:
        problem = check_checkpoint(point, args.size)
        if problem is not None:
            print(problem, file=sys.stderr)
            return CORRUPT_EXIT_CODE
        step = point.step
    journal.write(f"resumed {step}\n")

    def save() -> Checkpoint | None:
        at = step
        saved = ckpts.save(at, lambda d: write_state(d, at, args.rank, args.attempt, args.size))
        if saved is not None:
            journal.write(f"saved {saved.step}\n")
        return saved

    ckpts.on_sigterm(save)
    # Steps are paced by the clock from a common start, so ranks stay in step like the ranks
    # of a data-parallel job, which meet at every step's all-reduce.
    base, start = step, max(args.start_at, time.time())
    while True:
        time.sleep(max(0.0, start + (step - base) * args.step_seconds - time.time()))
        step += 1
        journal.write(f"reached {step}\n")
        if step % args.save_every == 0 and save() is None and args.sharded:
            # As a data-parallel job does after saving: wait for the other ranks.
            committed = args.dir / f"step-{step:012d}"
            deadline = time.time() + 10
            while not committed.exists() and time.time() < deadline:
                time.sleep(0.001)


if __name__ == "__main__":
    os.environ.pop("STRATUS_RESUME_FROM", None)
    sys.exit(main())
