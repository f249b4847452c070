"""Property test of the checkpoint SDK with real processes: several writers share one directory
and are stopped with SIGTERM or SIGKILL at random moments, run after run. Whatever the timing:
- every published checkpoint verifies (a kill never leaves a partial one in sight);
- the resume point is never older than the newest checkpoint any writer saw `save()` return;
- what a writer resumes from is exactly what its step wrote, and a sharded checkpoint never
  mixes shards of different attempts;
- no writer ever fails because another removed its work in progress;
- a kill costs at most the steps since the last periodic save.

The figures (runs, kills by signal, worst-case lost steps) are printed (`pytest -s`) and
recorded as properties in the JUnit report. STRATUS_KILL_RUNS and STRATUS_KILL_SEED change the
number of runs per case and the seed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stratus.sdk import PREEMPTED_EXIT_CODE, CheckpointManager
from tests.unit.checkpoint_worker import check_checkpoint

WORKER = Path(__file__).with_name("checkpoint_worker.py")
RUNS = int(os.environ.get("STRATUS_KILL_RUNS", "30"))
SEED = int(os.environ.get("STRATUS_KILL_SEED", "20240613"))
SIZE = 65536
SAVE_EVERY = 10
# The share of runs whose kills may land while writers still start up and resume.
EARLY_KILLS = 0.2
SPAWNED: list[subprocess.Popen[bytes]] = []
# What the SDK keeps while working: scratch, shards waiting for their step, trash.
SCRATCH = (".stratus-tmp-", ".stratus-shards-", ".stratus-trash-")


@dataclass
class Figures:
    runs: int = 0
    kills: dict[str, int] = field(default_factory=lambda: {"SIGTERM": 0, "SIGKILL": 0})
    worst_lost_after_sigterm: int = 0
    worst_lost_after_sigkill: int = 0
    saves: int = 0

    def line(self, case: str) -> str:
        return (
            f"{case}: {self.runs} runs, {self.kills['SIGTERM']} SIGTERM and "
            f"{self.kills['SIGKILL']} SIGKILL kills, {self.saves} acknowledged saves; "
            f"worst case lost steps: {self.worst_lost_after_sigterm} when every writer got "
            f"SIGTERM, {self.worst_lost_after_sigkill} when one got SIGKILL"
        )


def journal(directory: Path, word: str) -> list[int]:
    return [
        int(line.split()[1])
        for path in directory.glob("*.journal")
        for line in path.read_text().splitlines()
        if line.startswith(f"{word} ")
    ]


def wait_resumed(journals: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while len(journal(journals, "resumed")) < len(procs):
        assert all(p.poll() is None for p in procs), "a writer exited before it resumed"
        assert time.monotonic() < deadline, "the writers did not resume within 60 s"
        time.sleep(0.01)


def run_case(
    tmp_path: Path,
    rng: random.Random,
    launch: Callable[[int, Path], list[subprocess.Popen[bytes]]],
    record: Callable[[str, object], None],
    case: str,
) -> Figures:
    figures = Figures()
    ckpt = tmp_path / "ckpt"
    newest_saved = 0
    for attempt in range(1, RUNS + 1):
        journals = tmp_path / f"attempt-{attempt}"
        journals.mkdir()
        procs = launch(attempt, journals)
        if rng.random() < EARLY_KILLS:
            time.sleep(rng.uniform(0, 0.3))
        else:
            # Timed from when every writer has resumed, not from its launch: a loaded machine
            # starts Python slowly, and kills that all land before the first save test nothing.
            wait_resumed(journals, procs)
            time.sleep(rng.uniform(0.02, 0.4))
        signals = [rng.choice((signal.SIGTERM, signal.SIGKILL)) for _ in procs]
        for proc, sig in zip(procs, signals, strict=True):
            proc.send_signal(sig)
            figures.kills[sig.name] += 1
            time.sleep(rng.uniform(0, 0.005))  # a node's pods are stopped nearly at once
        for proc, sig in zip(procs, signals, strict=True):
            code = proc.wait(timeout=30)
            stderr = proc.stderr.read().decode() if proc.stderr else ""
            # 143: the handler ran (saved or failed to); -SIGTERM: killed before installing it.
            allowed = {PREEMPTED_EXIT_CODE, -signal.SIGTERM} if sig == signal.SIGTERM else {-9}
            assert code in allowed, f"{case} attempt {attempt}: exit {code} after {sig!r}\n{stderr}"
        figures.runs += 1

        resumed = journal(journals, "resumed")
        assert min(resumed, default=newest_saved) >= newest_saved, (
            f"{case} attempt {attempt} resumed from {min(resumed)}, "
            f"older than step {newest_saved}, which was saved"
        )
        saved = journal(journals, "saved")
        figures.saves += len(saved)
        newest_saved = max([newest_saved, *saved])
        reached = max(journal(journals, "reached"), default=0)

        for path in ckpt.glob("step-*"):
            checked = CheckpointManager(ckpt, rank=0, world_size=1).verify(path)
            assert checked is not None, f"{case} attempt {attempt}: {path.name} does not verify"
        latest = CheckpointManager(ckpt, rank=0, world_size=1).latest()
        step = latest.step if latest else 0
        assert step >= newest_saved, f"{case}: latest is {step}, {newest_saved} was saved"
        if latest is not None:
            assert check_checkpoint(latest, SIZE) is None, check_checkpoint(latest, SIZE)
        lost = max(0, reached - step)
        # Saves are synchronous: a kill costs at most the steps since the last periodic save.
        assert lost <= SAVE_EVERY, f"{case} attempt {attempt}: lost {lost} steps"
        if signal.SIGKILL in signals:
            figures.worst_lost_after_sigkill = max(figures.worst_lost_after_sigkill, lost)
        else:
            figures.worst_lost_after_sigterm = max(figures.worst_lost_after_sigterm, lost)

    leftovers = [p.name for p in ckpt.iterdir() if p.name.startswith(".stratus-tmp-")]
    CheckpointManager(ckpt, rank=0, world_size=1).save(10**9, lambda d: None)
    swept = [p.name for p in ckpt.iterdir() if p.name.startswith(SCRATCH)]
    assert swept == [], f"left behind after a clean save: {swept} (before: {leftovers})"
    print(figures.line(case))
    record(f"{case}_figures", figures.line(case))
    return figures


@pytest.fixture(autouse=True)
def no_writer_left() -> Iterator[None]:
    """A failed run leaves no writer running: they step and save until killed."""
    yield
    while SPAWNED:
        proc = SPAWNED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def spawn(args: list[str], journal_path: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            *(sys.executable, str(WORKER), "--journal", str(journal_path)),
            *("--size", str(SIZE), "--save-every", str(SAVE_EVERY), *args),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    SPAWNED.append(proc)
    return proc


def test_several_whole_writers_killed_at_random_never_lose_a_saved_step(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """Three rank-0 writers on one volume (a zombie of an old attempt beside the new one,
    say): they save at different steps, prune, and sweep concurrently."""
    rng = random.Random(SEED)  # noqa: S311 - reproducible timing, not cryptography

    def launch(attempt: int, journals: Path) -> list[subprocess.Popen[bytes]]:
        procs = []
        for writer in range(3):
            args = [
                *("--dir", str(tmp_path / "ckpt"), "--attempt", str(attempt)),
                *("--step-seconds", str(rng.uniform(0.001, 0.004))),
            ]
            procs.append(spawn(args, journals / f"writer-{writer}.journal"))
            time.sleep(rng.uniform(0, 0.05))
        return procs

    figures = run_case(tmp_path, rng, launch, record_property, "whole")
    assert figures.saves > RUNS
    assert min(figures.kills.values()) > RUNS // 2


def test_sharded_ranks_killed_at_random_never_commit_a_partial_or_mixed_step(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """Three ranks each write their shard; a step is committed only with all three shards of
    one attempt."""
    rng = random.Random(SEED + 1)  # noqa: S311 - reproducible timing, not cryptography

    def launch(attempt: int, journals: Path) -> list[subprocess.Popen[bytes]]:
        procs = []
        start = time.time() + 0.25  # after every rank has started and resumed
        for rank in range(3):
            args = [
                *("--dir", str(tmp_path / "ckpt"), "--attempt", str(attempt), "--sharded"),
                *("--rank", str(rank), "--world-size", "3", "--start-at", str(start)),
            ]
            procs.append(spawn(args, journals / f"rank-{rank}.journal"))
            time.sleep(rng.uniform(0, 0.03))
        return procs

    figures = run_case(tmp_path, rng, launch, record_property, "sharded")
    assert figures.saves > RUNS
    assert min(figures.kills.values()) > RUNS // 2
