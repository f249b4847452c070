"""Checkpoints a training program can trust: saved atomically with a sha256 manifest, found again
after any interruption, reported to Stratus through the container's termination message.

Dependency-free on purpose: the program imports it and nothing else of Stratus.

    ckpts = CheckpointManager()               # STRATUS_CHECKPOINT_DIR, keep the last 3
    start = ckpts.latest()                    # None on a fresh start
    ckpts.on_sigterm(lambda: ckpts.save(step, write_state))
    ...
    ckpts.save(step, write_state)             # write_state(directory) writes the files
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

MANIFEST = "MANIFEST.json"
PREFIX = "step-"
# 128 + SIGTERM: the attempt was stopped, not finished. Exiting 0 here would mark the worker
# complete and could end the whole run as a success.
PREEMPTED_EXIT_CODE = 143


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    sha256: str

    def report(self) -> str:
        return json.dumps({"path": str(self.path), "step": self.step, "sha256": self.sha256})


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)


class CheckpointManager:
    def __init__(
        self,
        directory: str | Path | None = None,
        keep: int = 3,
        termination_log: str | Path | None = None,
    ) -> None:
        root = directory or os.environ.get("STRATUS_CHECKPOINT_DIR", "/checkpoints")
        self.directory = Path(root)
        self.keep = max(1, keep)
        self.termination_log = Path(
            termination_log or os.environ.get("STRATUS_TERMINATION_LOG", "/dev/termination-log")
        )

    def save(self, step: int, write: Callable[[Path], object]) -> Checkpoint:
        """Write a checkpoint for `step` atomically: `write` fills a temporary directory, every
        file is hashed into the manifest and fsynced, then the directory is renamed into place.
        A crash at any point leaves either the previous checkpoints or this one complete."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{PREFIX}{step:012d}"
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{PREFIX}{step}-", dir=self.directory))
        try:
            write(staging)
            files = {str(p.relative_to(staging)): _digest(p) for p in _files(staging)}
            manifest = staging / MANIFEST
            manifest.write_text(json.dumps({"step": step, "files": files}, sort_keys=True))
            for path in [*_files(staging), manifest]:
                _fsync(path)
            _fsync(staging)
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
            _fsync(self.directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        checkpoint = Checkpoint(final, step, _digest(final / MANIFEST))
        self._prune()
        self.report(checkpoint)
        return checkpoint

    def _candidates(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        found = [
            p
            for p in self.directory.iterdir()
            if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit()
        ]
        return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]), reverse=True)

    def verify(self, path: Path) -> Checkpoint | None:
        """The checkpoint at `path` if its manifest and every file in it check out."""
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            files: dict[str, str] = manifest["files"]
            on_disk = {str(p.relative_to(path)) for p in _files(path)}
            if on_disk != set(files):
                return None
            if any(_digest(path / name) != digest for name, digest in files.items()):
                return None
            return Checkpoint(path, int(manifest["step"]), _digest(path / MANIFEST))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint that verifies; torn or corrupt ones are skipped."""
        for path in self._candidates():
            checkpoint = self.verify(path)
            if checkpoint is not None:
                return checkpoint
        return None

    def resume_point(self) -> Checkpoint | None:
        """Where to resume: the newest checkpoint that verifies. STRATUS_RESUME_FROM (what the
        last attempt reported) is only a hint; a newer verified checkpoint on disk wins."""
        newest = self.latest()
        hinted = os.environ.get("STRATUS_RESUME_FROM")
        if hinted and (newest is None or not newest.path.samefile(hinted)):
            checked = self.verify(Path(hinted))
            if checked is not None and (newest is None or checked.step > newest.step):
                return checked
        return newest

    def _prune(self) -> None:
        for stale in self._candidates()[self.keep :]:
            shutil.rmtree(stale, ignore_errors=True)
        for leftover in self.directory.glob(f".tmp-{PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)

    def report(self, checkpoint: Checkpoint) -> None:
        """Leave the checkpoint in the termination message, where Stratus reads it."""
        with contextlib.suppress(OSError):
            self.termination_log.write_text(checkpoint.report())

    def on_sigterm(self, save: Callable[[], Checkpoint | None]) -> None:
        """On SIGTERM (spot notice, eviction, suspend): run `save`, report what it saved, and
        exit with 143 so the attempt counts as stopped, not as finished."""

        def handler(_signum: int, _frame: FrameType | None) -> None:
            checkpoint = save()
            if checkpoint is not None:
                self.report(checkpoint)
            sys.stdout.flush()
            os._exit(PREEMPTED_EXIT_CODE)

        signal.signal(signal.SIGTERM, handler)


def save_state_dict(state: object, directory: Path, name: str = "state.pt") -> None:
    """Write a PyTorch state_dict (or any torch-serializable object) into a checkpoint
    directory; for use as, or inside, the `write` callback. Needs torch."""
    import torch  # noqa: PLC0415 - optional: only programs that use PyTorch call this

    torch.save(state, directory / name)


def load_state_dict(checkpoint: Checkpoint, name: str = "state.pt") -> object:
    import torch  # noqa: PLC0415

    return torch.load(checkpoint.path / name, map_location="cpu", weights_only=True)
