"""A small, deterministic training loop that survives preemption with the Stratus SDK.

It trains a toy linear model with plain Python arithmetic (no GPU needed to try it), saves a
checkpoint every --save-every steps and on SIGTERM, and resumes from the newest checkpoint that
verifies. Interrupted and resumed any number of times, it ends with exactly the weights of an
uninterrupted run, which it writes to --out.

    STRATUS_CHECKPOINT_DIR=/tmp/ckpt python examples/train/train.py --steps 2000 --out w.json

With STRATUS_CHECKPOINT_URI=s3://<bucket>/<prefix> (and the AWS_* variables) the SDK also uploads
each checkpoint and resumes from the bucket; the program does not change, except that it waits
for its last checkpoint to be in the bucket before it reports success.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from stratus.sdk import Checkpoint, CheckpointManager


@dataclass(frozen=True)
class State:
    step: int
    weights: list[float]


def train_step(weights: list[float], step: int) -> list[float]:
    """One step of gradient descent on y = 3x - 2, with inputs derived from the step number."""
    x = ((step * 7919) % 1000) / 1000.0
    error = weights[0] * x + weights[1] - (3.0 * x - 2.0)
    return [weights[0] - 0.05 * error * x, weights[1] - 0.05 * error]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--save-every", type=int, default=50)
    parser.add_argument("--step-seconds", type=float, default=0.0, help="simulated step time")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    ckpts = CheckpointManager(keep=3)
    state = State(0, [0.0, 0.0])
    resume = ckpts.resume_point()
    if resume is not None:
        saved = json.loads((resume.path / "state.json").read_text())
        state = State(saved["step"], saved["weights"])
        print(f"resuming from {resume.path} (step {resume.step})", flush=True)

    def save() -> Checkpoint | None:
        snapshot = state  # immutable: one consistent (step, weights) pair
        body = json.dumps({"step": snapshot.step, "weights": snapshot.weights})
        return ckpts.save(snapshot.step, lambda d: (d / "state.json").write_text(body))

    ckpts.on_sigterm(save)
    while state.step < args.steps:
        step = state.step + 1
        # Replace the whole state at once, so a signal between steps sees a consistent pair.
        state = State(step, train_step(state.weights, step))
        if step % args.save_every == 0:
            save()
        if args.step_seconds:
            time.sleep(args.step_seconds)
    save()
    uploaded = ckpts.flush()  # None without a bucket; raises if the upload failed
    if uploaded is not None:
        print(f"final checkpoint in {uploaded.uri}", flush=True)
    args.out.write_text(json.dumps(state.weights))
    print(f"done at step {state.step}: weights {state.weights}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
