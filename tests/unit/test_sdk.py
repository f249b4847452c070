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
import time
from pathlib import Path

from stratus.sdk import PREEMPTED_EXIT_CODE, CheckpointManager

TRAIN = Path(__file__).resolve().parents[2] / "examples" / "train" / "train.py"
STEPS = 3000


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
    tmp_path: Path, monkeypatch: object
) -> None:
    ckpts = CheckpointManager(tmp_path / "a", termination_log=tmp_path / "log")
    ckpts.save(5, lambda d: (d / "s").write_text("five"))
    elsewhere = CheckpointManager(tmp_path / "b", termination_log=tmp_path / "log")
    hinted = elsewhere.save(9, lambda d: (d / "s").write_text("nine"))
    os.environ["STRATUS_RESUME_FROM"] = str(hinted.path)
    try:
        point = ckpts.resume_point()
        assert point is not None
        assert point.step == 9
        (hinted.path / "s").write_text("corrupt")
        point = ckpts.resume_point()
        assert point is not None
        assert point.step == 5
    finally:
        del os.environ["STRATUS_RESUME_FROM"]
