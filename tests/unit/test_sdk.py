"""The checkpoint SDK for real: a deterministic training program in a subprocess, stopped with
SIGTERM and SIGKILL at random points and restarted, ends exactly where an uninterrupted run
does; corrupt or torn checkpoints are skipped."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratus.sdk import PREEMPTED_EXIT_CODE, Checkpoint, CheckpointManager

TRAIN = Path(__file__).resolve().parents[2] / "examples" / "train" / "train.py"
STEPS = 3000
SCRATCH = (".stratus-tmp-", ".stratus-trash-", ".stratus-shards-")


def launch(workdir: Path, out: Path, step_seconds: float = 0.0) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "STRATUS_CHECKPOINT_DIR": str(workdir / "ckpt"),
        "STRATUS_TERMINATION_LOG": str(workdir / "termination-log"),
    }
    return subprocess.Popen(
        [
            sys.executable,
            str(TRAIN),
            "--steps",
            str(STEPS),
            "--save-every",
            "50",
            "--step-seconds",
            str(step_seconds),
            "--out",
            str(out),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )


def test_interrupted_runs_end_with_the_uninterrupted_result(tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    clean.mkdir()
    assert launch(clean, clean / "w.json").wait(timeout=60) == 0
    expected = json.loads((clean / "w.json").read_text())

    rough = tmp_path / "rough"
    rough.mkdir()
    rng = random.Random(7)  # noqa: S311 - reproducible timing, not cryptography
    interruptions = {signal.SIGTERM: 0, signal.SIGKILL: 0}
    for i in range(60):
        proc = launch(rough, rough / "w.json", step_seconds=0.0005)
        time.sleep(rng.uniform(0.15, 0.4))
        if proc.poll() is not None:
            break
        sig = (signal.SIGTERM, signal.SIGKILL)[i % 2]
        proc.send_signal(sig)
        code = proc.wait(timeout=30)
        if code == 0:
            break
        if code == -signal.SIGTERM:
            continue  # stopped before it installed its handler: nothing to save yet
        interruptions[sig] += 1
        if sig == signal.SIGTERM:
            assert code == PREEMPTED_EXIT_CODE
            report = json.loads((rough / "termination-log").read_text())
            assert Path(report["path"]).name.startswith("step-")
    else:
        raise AssertionError("the run never finished")
    if proc.returncode is None:
        assert proc.wait(timeout=60) == 0
    assert interruptions[signal.SIGTERM] >= 2
    assert interruptions[signal.SIGKILL] >= 2
    assert json.loads((rough / "w.json").read_text()) == expected


def write(text: str) -> object:
    return lambda d: (d / "state.json").write_text(text)


def test_a_corrupt_newest_checkpoint_is_skipped(tmp_path: Path) -> None:
    log = tmp_path / "log"
    ckpts = CheckpointManager(tmp_path / "ckpt", keep=5, termination_log=log)
    ckpts.save(10, lambda d: (d / "state.json").write_text("ten"))
    newest = ckpts.save(20, lambda d: (d / "state.json").write_text("twenty"))
    assert newest is not None
    assert json.loads(log.read_text())["step"] == 20
    assert ckpts.latest() == newest
    (newest.path / "state.json").write_text("twenty, bit-flipped")
    latest = ckpts.latest()
    assert latest is not None
    assert latest.step == 10


def test_torn_checkpoints_and_temporary_leftovers_are_ignored(tmp_path: Path) -> None:
    ckpts = CheckpointManager(tmp_path, termination_log=tmp_path / "log")
    good = ckpts.save(1, lambda d: (d / "a.bin").write_bytes(b"\x00" * 10))
    torn = tmp_path / "step-000000000002"
    torn.mkdir()
    (torn / "a.bin").write_bytes(b"partial")  # crashed before its manifest
    (tmp_path / ".tmp-step-3-abc").mkdir()
    extra = tmp_path / "step-000000000004"
    extra.mkdir()
    (extra / "MANIFEST.json").write_text(json.dumps({"step": 4, "files": {}}))
    (extra / "unlisted.bin").write_bytes(b"x")  # a file the manifest does not know
    assert ckpts.latest() == good


def test_only_the_last_n_are_kept(tmp_path: Path) -> None:
    ckpts = CheckpointManager(tmp_path, keep=2, termination_log=tmp_path / "log")
    for step in range(5):
        ckpts.save(step, lambda d: (d / "s").write_text("x"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("step-")) == [
        "step-000000000003",
        "step-000000000004",
    ]


def test_the_resume_hint_is_used_only_when_it_verifies_and_is_newer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpts = manager(tmp_path / "a")
    saved(ckpts, 5, "five")
    hinted = saved(manager(tmp_path / "b"), 9, "nine")
    monkeypatch.setenv("STRATUS_RESUME_FROM", str(hinted.path))
    point = ckpts.resume_point()
    assert point is not None
    assert point.step == 9
    (hinted.path / "s").write_text("corrupt")
    point = ckpts.resume_point()
    assert point is not None
    assert point.step == 5


def saver(text: str) -> Callable[[Path], object]:
    return lambda d: (d / "s").write_text(text)


def manager(directory: Path, **kwargs: Any) -> CheckpointManager:
    kwargs.setdefault("rank", 0)
    kwargs.setdefault("world_size", 1)
    return CheckpointManager(directory / "ckpt", termination_log=directory / "log", **kwargs)


def saved(ckpts: CheckpointManager, step: int, text: str = "x") -> Checkpoint:
    checkpoint = ckpts.save(step, saver(text))
    assert checkpoint is not None
    return checkpoint


def steps_on_disk(directory: Path) -> list[int]:
    return sorted(int(p.name.removeprefix("step-")) for p in directory.glob("step-*"))


@pytest.mark.parametrize("hint", ["missing", "a-file", "empty", "corrupt", "torn-manifest"])
def test_a_resume_hint_that_is_missing_or_corrupt_falls_back_to_the_newest_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hint: str
) -> None:
    """The old code raised FileNotFoundError for a missing hint, so every attempt crashed."""
    elsewhere = tmp_path / "elsewhere"
    target = elsewhere / "ckpt" / "step-000000000099"
    if hint == "a-file":
        target.parent.mkdir(parents=True)
        target.write_text("not a checkpoint")
    elif hint == "empty":
        target.mkdir(parents=True)
    elif hint in ("corrupt", "torn-manifest"):
        other = saved(manager(elsewhere), 99, "ninety-nine")
        assert other.path == target
        if hint == "corrupt":
            (target / "s").write_text("bit-flipped")
        else:
            (target / "MANIFEST.json").write_text('{"step": 99, "files": ')
    monkeypatch.setenv("STRATUS_RESUME_FROM", str(target))
    ckpts = manager(tmp_path)
    assert ckpts.resume_point() is None
    saved(ckpts, 5)
    newest = saved(ckpts, 7)
    assert ckpts.resume_point() == newest


def test_keep_counts_only_verified_checkpoints(tmp_path: Path) -> None:
    """Torn and corrupt directories with higher steps used to count towards `keep`, so the
    checkpoint just saved was pruned at once and save() returned a path that did not exist."""
    ckpts = manager(tmp_path, keep=2)
    root = ckpts.directory
    for step in (100, 101, 102):
        torn = root / f"step-{step:012d}"
        torn.mkdir(parents=True)
        (torn / "s").write_text("partial")
    corrupt = saved(ckpts, 103)
    (corrupt.path / "s").write_text("bit-flipped")
    for step in (1, 2, 3):
        checkpoint = saved(ckpts, step)
        assert ckpts.verify(checkpoint.path) == checkpoint
    # The two newest verified are kept; nothing that does not verify is touched.
    assert steps_on_disk(root) == [2, 3, 100, 101, 102, 103]
    latest = ckpts.latest()
    assert latest is not None
    assert latest.step == 3


def test_save_never_returns_a_path_it_pruned(tmp_path: Path) -> None:
    """A writer behind another (a straggler, a zombie of an old attempt) saves an older step:
    it is kept next to the newest `keep`, not pruned on the spot."""
    ahead = manager(tmp_path, keep=2)
    for step in (10, 20, 30):
        saved(ahead, step)
    behind = saved(manager(tmp_path, keep=2), 5)
    assert behind.path.is_dir()
    assert steps_on_disk(ahead.directory) == [5, 20, 30]
    saved(ahead, 40)
    assert steps_on_disk(ahead.directory) == [30, 40]


def test_a_step_already_saved_is_kept_as_it_is(tmp_path: Path) -> None:
    ckpts = manager(tmp_path)
    first = saved(ckpts, 4, "first")
    again = ckpts.save(4, lambda d: pytest.fail("a verified step is not written again"))
    assert again == first
    assert (first.path / "s").read_text() == "first"


def test_another_writers_work_in_progress_is_never_removed(tmp_path: Path) -> None:
    """The old code removed every `.tmp-step-*` when it pruned: writers sharing a volume deleted
    each other's saves in progress. A writer's scratch is locked while it lives; only scratch
    whose lock is free (its writer died) is swept."""
    first = manager(tmp_path)
    second = manager(tmp_path)
    root = first.directory
    root.mkdir()
    dead = root / ".stratus-tmp-1-dead"
    dead.mkdir()
    (dead / "s").write_text("a writer was killed here")
    (root / ".stratus-tmp-1-dead.lock").touch()
    orphan = root / ".stratus-tmp-2-orphan"  # no lock at all: its writer is gone too
    orphan.mkdir()

    def write(directory: Path) -> None:
        (directory / "a").write_text("half")
        saved(second, 1)  # saves, prunes and sweeps while this save is in progress
        assert directory.is_dir()
        (directory / "b").write_text("other half")

    mine = first.save(2, write)
    assert mine is not None
    assert sorted(p.name for p in mine.path.iterdir()) == ["MANIFEST.json", "a", "b"]
    assert steps_on_disk(root) == [1, 2]
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".stratus-tmp-")]
    assert leftovers == []


def test_only_rank_0_writes_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    other = CheckpointManager(tmp_path / "ckpt", termination_log=tmp_path / "log-2")
    assert not other.writes
    assert other.save(10, lambda d: pytest.fail("rank 2 must not write")) is None
    assert not (tmp_path / "log-2").exists()
    monkeypatch.setenv("RANK", "0")
    writer = CheckpointManager(tmp_path / "ckpt", termination_log=tmp_path / "log-0")
    checkpoint = writer.save(10, saver("rank 0"))
    assert checkpoint is not None
    assert checkpoint.shards == 0
    assert other.resume_point() == checkpoint
    assert other.shard_path(checkpoint) == checkpoint.path


@pytest.mark.parametrize(("rank", "world"), [("4", "4"), ("-1", "2"), ("one", "2")])
def test_a_rank_outside_the_world_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rank: str, world: str
) -> None:
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", world)
    with pytest.raises(ValueError, match=r"RANK|outside"):
        CheckpointManager(tmp_path)


def test_sharded_steps_are_committed_when_every_rank_has_saved(tmp_path: Path) -> None:
    ranks = [manager(tmp_path, sharded=True, rank=r, world_size=3, attempt=1) for r in range(3)]
    assert ranks[0].save(10, saver("rank 0")) is None
    assert ranks[2].save(10, saver("rank 2")) is None
    assert ranks[0].latest() is None  # two shards of three are not a checkpoint
    committed = ranks[1].save(10, saver("rank 1"))
    assert committed is not None
    assert committed.shards == 3
    for rank, ckpts in enumerate(ranks):
        assert ckpts.resume_point() == committed
        assert (ckpts.shard_path(committed) / "s").read_text() == f"rank {rank}"
    assert json.loads((tmp_path / "log").read_text())["step"] == 10
    assert [p.name for p in committed.path.iterdir() if p.name.startswith(".")] == []


def test_shards_of_different_attempts_are_never_committed_together(tmp_path: Path) -> None:
    """Attempt 1 saved two shards of step 20 and was stopped; attempt 2, resumed from an
    earlier step, reaches step 20 with different state: only its own three shards commit."""

    def ranks(attempt: int) -> list[CheckpointManager]:
        return [
            manager(tmp_path, sharded=True, rank=r, world_size=3, attempt=attempt) for r in range(3)
        ]

    first, second = ranks(1), ranks(2)
    first[0].save(20, saver("attempt 1"))
    first[1].save(20, saver("attempt 1"))
    assert second[2].save(20, saver("attempt 2")) is None
    assert second[0].save(20, saver("attempt 2")) is None
    committed = second[1].save(20, saver("attempt 2"))
    assert committed is not None
    assert {(committed.path / f"rank-{r:05d}" / "s").read_text() for r in range(3)} == {"attempt 2"}
    # Attempt 1's shards of step 20 are gone with the commit: that step is saved.
    hidden = [p.name for p in second[0].directory.iterdir() if p.name.startswith(".stratus-")]
    assert hidden == []


def test_sharded_checkpoints_need_the_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRATUS_ATTEMPT", raising=False)
    with pytest.raises(ValueError, match="STRATUS_ATTEMPT"):
        manager(tmp_path, sharded=True, rank=0, world_size=2)
    monkeypatch.setenv("STRATUS_ATTEMPT", "3")
    assert manager(tmp_path, sharded=True, rank=0, world_size=2).attempt == 3


def run_script(tmp_path: Path, body: str) -> tuple[int, str]:
    script = tmp_path / "script.py"
    script.write_text(
        "import os, signal, sys\nfrom pathlib import Path\n"
        "from stratus.sdk import CheckpointManager\n"
        f"root = Path({str(tmp_path)!r})\n"
        "ckpts = CheckpointManager(root / 'ckpt', termination_log=root / 'log', rank=0, "
        "world_size=1)\n" + body
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    return proc.returncode, proc.stderr


def test_a_failed_save_on_sigterm_still_exits_143_with_the_reason(tmp_path: Path) -> None:
    """The old handler let the exception escape: exit 1 and a traceback, and the attempt
    counted as an application failure instead of a stop."""
    code, stderr = run_script(
        tmp_path,
        "ckpts.save(3, lambda d: (d / 's').write_text('three'))\n"
        "def full(d): raise OSError(28, 'No space left on device')\n"
        "ckpts.on_sigterm(lambda: ckpts.save(4, full))\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "sys.exit(0)\n",
    )
    assert code == PREEMPTED_EXIT_CODE, stderr
    report = json.loads((tmp_path / "log").read_text())
    assert report["step"] == 3  # where to resume, still known to Stratus
    assert report["path"] == str(tmp_path / "ckpt" / "step-000000000003")
    assert report["error"] == (
        "checkpoint save failed: OSError: [Errno 28] No space left on device"
    )
    assert "Traceback" not in stderr
    assert steps_on_disk(tmp_path / "ckpt") == [3]
    assert [p.name for p in (tmp_path / "ckpt").glob(".stratus-tmp-*")] == []


def test_a_failed_first_save_on_sigterm_leaves_the_reason_alone(tmp_path: Path) -> None:
    code, _ = run_script(
        tmp_path,
        "def broken(d): raise RuntimeError('CUDA error: an illegal memory access\\nat step 9')\n"
        "ckpts.on_sigterm(lambda: ckpts.save(9, broken))\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n",
    )
    assert code == PREEMPTED_EXIT_CODE
    assert (tmp_path / "log").read_text() == (
        "checkpoint save failed: RuntimeError: CUDA error: an illegal memory access at step 9"
    )


def test_sigterm_while_holding_the_directory_lock_saves_once_it_is_released(
    tmp_path: Path,
) -> None:
    """The handler's save needs the directory lock; run at once, it would wait forever for
    the code it interrupted."""
    code, stderr = run_script(
        tmp_path,
        "from stratus.sdk.checkpoint import CheckpointManager as M\n"
        "install = M._install\n"
        "def interrupted(self, step, scratch):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    (root / 'went-on').touch()\n"
        "    return install(self, step, scratch)\n"
        "M._install = interrupted\n"
        "ckpts.on_sigterm(lambda: ckpts.save(2, lambda d: (d / 's').write_text('two')))\n"
        "ckpts.save(1, lambda d: (d / 's').write_text('one'))\n"
        "sys.exit(0)\n",
    )
    assert code == PREEMPTED_EXIT_CODE, stderr
    assert (tmp_path / "went-on").exists()
    assert steps_on_disk(tmp_path / "ckpt") == [1, 2]
    assert json.loads((tmp_path / "log").read_text())["step"] == 2


Operation = tuple[str, int, int]
operations = st.lists(
    st.one_of(
        st.tuples(st.just("save"), st.integers(0, 2), st.integers(0, 12)),
        st.tuples(st.just("corrupt"), st.just(0), st.integers(0, 12)),
        st.tuples(st.just("torn"), st.just(0), st.integers(0, 12)),
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=60, deadline=None)
@given(ops=operations, keep=st.integers(1, 3))
def test_pruning_never_loses_the_newest_good_checkpoint(ops: list[Operation], keep: int) -> None:
    """Three writers on one directory, saving in any order, with checkpoints corrupted and torn
    directories appearing between saves: the newest good checkpoint is always there, save()
    returns a checkpoint that exists and verifies, and only verified ones are pruned."""
    with tempfile.TemporaryDirectory() as root:
        writers = [manager(Path(root), keep=keep) for _ in range(3)]
        directory = writers[0].directory
        good: set[int] = set()
        bad: set[int] = set()
        for kind, writer, step in ops:
            path = directory / f"step-{step:012d}"
            if kind == "save":
                checkpoint = writers[writer].save(step, saver(f"step {step}"))
                assert checkpoint is not None
                assert checkpoint.step == step
                assert writers[writer].verify(checkpoint.path) == checkpoint
                good.add(step)
                bad.discard(step)
                scratch = [p for p in directory.iterdir() if p.name.startswith(SCRATCH)]
                assert scratch == []
                verified = [s for s in steps_on_disk(directory) if s not in bad]
                assert len(verified) <= keep + 1
            elif kind == "corrupt" and path.is_dir() and step in good:
                with (path / "s").open("a") as handle:
                    handle.write(" and then some")
                good.discard(step)
                bad.add(step)
            elif kind == "torn" and not path.exists():
                directory.mkdir(exist_ok=True)
                path.mkdir()
                bad.add(step)
            on_disk = set(steps_on_disk(directory))
            assert bad <= on_disk, "only verified checkpoints are pruned"
            good &= on_disk
            latest = writers[0].latest()
            assert (latest.step if latest else None) == max(good, default=None)
