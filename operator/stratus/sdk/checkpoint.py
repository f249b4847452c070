"""Checkpoints a training program can trust: saved atomically with a sha256 manifest, found again
after any interruption, reported to Stratus through the container's termination message.

Dependency-free on purpose: the program imports it and nothing else of Stratus.

    ckpts = CheckpointManager()               # STRATUS_CHECKPOINT_DIR, keep the last 3
    start = ckpts.resume_point()              # None on a fresh start
    ckpts.on_sigterm(lambda: ckpts.save(step, write_state))
    ...
    ckpts.save(step, write_state)             # write_state(directory) writes the files

Who writes in a job of several workers (rank from RANK, world size from WORLD_SIZE):
- by default only rank 0; `save()` on any other rank writes nothing and returns None;
- with `sharded=True` every rank writes its own shard of the step, and the step becomes a
  checkpoint only when the shards of all ranks from the same attempt are present: whichever rank
  completes the set commits them together.

Any number of processes may share one directory. Each writes into a scratch directory of its own,
locked while it lives, and publishes it with an atomic rename; a checkpoint, once published, is
never changed. Cleaning removes only scratch whose writer is gone (its lock is free), and `keep`
counts and prunes only checkpoints that verify.

With STRATUS_CHECKPOINT_URI=s3://<bucket>/<prefix> (see `stratus.sdk.remote`), checkpoints are
still written here first; each one saved is then uploaded in the background, resuming downloads
the newest complete one from the bucket when it is newer than what is here, and the termination
message names the newest checkpoint in the bucket. On SIGTERM the final save is uploaded within
the grace period (STRATUS_GRACE_SECONDS, less a margin), or the message says which step is the
newest uploaded.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from stratus.sdk.remote import (
    FileEntry,
    RemoteCheckpoint,
    RemoteError,
    RemoteStore,
    Uploader,
    log,
)
from stratus.sdk.s3 import S3Client, S3Error, split_uri

MANIFEST = "MANIFEST.json"
PREFIX = "step-"
SHARD_PREFIX = "rank-"
# Everything the SDK keeps for itself starts with `.stratus-`: never a checkpoint, never data.
_SCRATCH = ".stratus-tmp-"
_LOCK_SUFFIX = ".lock"
_STAGING = ".stratus-shards-"
_TRASH = ".stratus-trash-"
_DIRECTORY_LOCK = ".stratus.lock"
# 128 + SIGTERM: the attempt was stopped, not finished. Exiting 0 here would mark the worker
# complete and could end the whole run as a success.
PREEMPTED_EXIT_CODE = 143
# The kubelet keeps at most 4096 bytes of a termination message.
_REASON_LIMIT = 1024
# Kubernetes' default terminationGracePeriodSeconds, when STRATUS_GRACE_SECONDS is not set.
_DEFAULT_GRACE = 30.0


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    sha256: str
    # 0 for a checkpoint written whole; the number of ranks for one committed from shards.
    shards: int = 0

    def report(self) -> str:
        return json.dumps(self._fields())

    def _fields(self) -> dict[str, object]:
        return {"path": str(self.path), "step": self.step, "sha256": self.sha256}


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


def _seal(directory: Path, header: dict[str, object]) -> None:
    """Hash every file into the manifest and make all of it durable."""
    files = {str(p.relative_to(directory)): _digest(p) for p in _files(directory)}
    manifest = directory / MANIFEST
    manifest.write_text(json.dumps({**header, "files": files}, sort_keys=True))
    for path in [*_files(directory), manifest]:
        _fsync(path)
    for sub in sorted(p for p in directory.rglob("*") if p.is_dir()):
        _fsync(sub)
    _fsync(directory)


def _identity(path: Path) -> tuple[object, ...] | None:
    """What changes when any file of a checkpoint is replaced, resized or rewritten."""
    try:
        if not (path / MANIFEST).is_file():
            return None
        stats = [(p, p.stat()) for p in sorted(path.rglob("*")) if p.is_file()]
    except OSError:
        return None
    return (path, *((p, s.st_ino, s.st_size, s.st_mtime_ns) for p, s in stats))


def _step_of(name: str, prefix: str) -> int | None:
    digits = name[len(prefix) :].split("-", 1)[0] if name.startswith(prefix) else ""
    return int(digits) if digits.isdigit() else None


def _lock(path: Path, *, wait: bool, create: bool) -> int | None:
    """A descriptor holding an exclusive flock on `path`, or None: held by a live process (when
    not waiting), missing, or removed meanwhile by a cleaner (the inode check). Where the
    filesystem has no locks, a waiting caller goes on unlocked and a cleaner gets None: it never
    removes anything it cannot prove abandoned."""
    try:
        try:
            fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o666)
        except PermissionError:
            # Another user's lock file (umask): flock needs no write access on local filesystems.
            fd = os.open(path, os.O_RDONLY)
    except OSError:
        if create:
            raise
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        if wait:
            return fd
        os.close(fd)
        return None
    try:
        same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return None
    return fd


class _Shutdown:
    """The directory lock and SIGTERM: the handler saves, which takes the lock, so a SIGTERM that
    arrives while this process holds it waits until the lock is released instead of deadlocking
    on itself."""

    depth = 0
    pending: Callable[[], None] | None = None


_SHUTDOWN = _Shutdown()


def _agrees(directory: Path, fetched: RemoteCheckpoint) -> int:
    """The number of shards of a downloaded checkpoint, once its own manifest agrees with the
    remote one, against which every file was checked (so nothing is hashed twice); RemoteError
    when they disagree."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        listed = {k: v.sha256 for k, v in fetched.files.items() if k != MANIFEST}
        shards = manifest.get("world_size", 0)
        if (manifest["step"], manifest["files"]) == (fetched.step, listed) and isinstance(
            shards, int
        ):
            return shards
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    raise RemoteError(f"{fetched.uri}: its files are not a checkpoint")


def _grace_margin(grace: float) -> float:
    """Time kept back from the grace period: the report and the exit must land before SIGKILL."""
    return max(1.0, min(5.0, grace * 0.1))


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer") from None


class CheckpointManager:
    def __init__(
        self,
        directory: str | Path | None = None,
        keep: int = 3,
        termination_log: str | Path | None = None,
        *,
        sharded: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        attempt: int | None = None,
        uri: str | None = None,
        remote_keep: int | None = None,
        grace_seconds: float | None = None,
        client: S3Client | None = None,
    ) -> None:
        root = directory or os.environ.get("STRATUS_CHECKPOINT_DIR", "/checkpoints")
        self.directory = Path(root)
        self.keep = max(1, keep)
        self.termination_log = Path(
            termination_log or os.environ.get("STRATUS_TERMINATION_LOG", "/dev/termination-log")
        )
        self.rank = _env_int("RANK", 0) if rank is None else rank
        self.world_size = _env_int("WORLD_SIZE", 1) if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside a world of size {self.world_size}")
        self.sharded = sharded
        self.attempt = _env_int("STRATUS_ATTEMPT", -1) if attempt is None else attempt
        if sharded and self.attempt < 0:
            # Shards of different attempts must never be committed together, and only the
            # attempt number tells them apart.
            raise ValueError(
                "sharded checkpoints need STRATUS_ATTEMPT (Stratus sets it) or attempt="
            )
        self._last: Checkpoint | None = None
        self._verified: dict[tuple[object, ...], Checkpoint | None] = {}
        if grace_seconds is None:
            grace = os.environ.get("STRATUS_GRACE_SECONDS", "").strip()
            try:
                grace_seconds = float(grace) if grace else _DEFAULT_GRACE
            except ValueError:
                raise ValueError(f"STRATUS_GRACE_SECONDS={grace!r} is not a number") from None
        self.grace_seconds = grace_seconds
        # The termination message is written from the upload thread and the SIGTERM handler.
        self._report_lock = threading.RLock()
        self._resumed: RemoteCheckpoint | None = None
        self.remote: RemoteStore | None = None
        self._uploader: Uploader | None = None
        uri = uri if uri is not None else os.environ.get("STRATUS_CHECKPOINT_URI", "").strip()
        if uri:
            if not uri.startswith("s3://"):
                raise ValueError(
                    f"checkpoint URI {uri!r}: only s3://<bucket>/<prefix> is supported"
                )
            bucket, prefix = split_uri(uri)
            store_client = client or S3Client(
                bucket,
                part_size=_env_int("STRATUS_S3_PART_SIZE", 16 << 20),
                concurrency=_env_int("STRATUS_S3_CONCURRENCY", 4),
            )
            keep_remote = self.keep if remote_keep is None else remote_keep
            self.remote = RemoteStore(store_client, prefix, self.attempt, keep_remote)
            if self.writes:
                self._uploader = Uploader(self.remote, self._write_report)

    @property
    def writes(self) -> bool:
        """Whether `save()` writes in this process: every rank when sharded, else rank 0."""
        return self.sharded or self.rank == 0

    def _path(self, step: int) -> Path:
        return self.directory / f"{PREFIX}{step:012d}"

    def shard_path(self, checkpoint: Checkpoint) -> Path:
        """The directory this rank reads: its own shard of a sharded checkpoint, else all of it."""
        if checkpoint.shards:
            return checkpoint.path / f"{SHARD_PREFIX}{self.rank:05d}"
        return checkpoint.path

    def save(self, step: int, write: Callable[[Path], object]) -> Checkpoint | None:
        """Write a checkpoint for `step`: `write` fills a scratch directory of this process, every
        file is hashed into the manifest and fsynced, then the directory is renamed into place.
        A crash at any point leaves either the previous checkpoints or this one complete.

        Returns the checkpoint of `step`, or None when this process publishes nothing: not the
        writer (rank 0 writes unless sharded), or a shard saved while other ranks' are missing.
        A step already saved is kept as it is and returned: checkpoints are immutable."""
        if step < 0:
            raise ValueError(f"step {step} is negative")
        if not self.writes:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        checkpoint = self._known(self._path(step))
        if checkpoint is None:
            with self._scratch() as scratch:
                write(scratch)
                header: dict[str, object] = {"step": step}
                if self.sharded:
                    header |= {
                        "rank": self.rank,
                        "world_size": self.world_size,
                        "attempt": self.attempt,
                    }
                _seal(scratch, header)
                with self._exclusive():
                    place = self._commit_shard if self.sharded else self._install
                    checkpoint = place(step, scratch)
            if checkpoint is None:
                return None
        self.report(checkpoint)
        self._upload(checkpoint)
        try:
            self._prune(checkpoint)
        except OSError as error:  # the checkpoint is saved; only the cleaning failed
            print(f"checkpoint pruning failed: {error}", file=sys.stderr)
        return checkpoint

    def _install(self, step: int, scratch: Path) -> Checkpoint:
        final = self._path(step)
        existing = self._known(final)
        if existing is not None:
            return existing  # another writer published this step first
        return self._publish(scratch, final, step, 0)

    def _commit_shard(self, step: int, scratch: Path) -> Checkpoint | None:
        """Place this rank's shard; if that completes the step, commit all shards together."""
        final = self._path(step)
        existing = self._known(final)
        if existing is not None:
            return existing
        staging = self.directory / f"{_STAGING}{step:012d}-{self.attempt}"
        staging.mkdir(exist_ok=True)
        mine = staging / f"{SHARD_PREFIX}{self.rank:05d}"
        if not mine.exists():  # this rank saved the step already in this attempt: keep that one
            os.rename(scratch, mine)
            _fsync(staging)
        files: dict[str, str] = {}
        for rank in range(self.world_size):
            shard = f"{SHARD_PREFIX}{rank:05d}"
            try:
                manifest = json.loads((staging / shard / MANIFEST).read_text())
                if manifest["world_size"] != self.world_size:
                    return None
                files |= {f"{shard}/{name}": sha for name, sha in manifest["files"].items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return None  # that rank's shard is not there yet
        header = {"step": step, "world_size": self.world_size, "attempt": self.attempt}
        manifest_path = staging / MANIFEST
        manifest_path.write_text(json.dumps({**header, "files": files}, sort_keys=True))
        _fsync(manifest_path)
        _fsync(staging)
        return self._publish(staging, final, step, self.world_size)

    def _publish(self, source: Path, final: Path, step: int, shards: int) -> Checkpoint:
        """Rename a complete, durable directory into place. Whatever sits at `final` has failed
        verification (the callers checked), so it is moved aside, never mixed with."""
        if final.exists() or final.is_symlink():
            self._trash(final)
        try:
            os.rename(source, final)
        except OSError:
            # Only where locks do not work: another writer published this step meanwhile.
            existing = self._known(final)
            if existing is None:
                raise
            return existing
        _fsync(self.directory)
        checkpoint = Checkpoint(final, step, _digest(final / MANIFEST), shards)
        key = _identity(final)
        if key is not None:
            self._verified[key] = checkpoint  # hashed while it was written
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
        """The checkpoint at `path` if its manifest and every file in it check out; None for
        anything else, a missing path included."""
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            files: dict[str, str] = manifest["files"]
            step = manifest["step"]
            if not isinstance(step, int) or not isinstance(files, dict):
                return None
            on_disk = {str(p.relative_to(path)) for p in _files(path)}
            if on_disk != set(files):
                return None
            if any(_digest(path / name) != digest for name, digest in files.items()):
                return None
            shards = manifest.get("world_size", 0)
            if not isinstance(shards, int):
                return None
            return Checkpoint(path, step, _digest(path / MANIFEST), shards)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def _known(self, path: Path) -> Checkpoint | None:
        """`verify`, remembered while no file of the checkpoint changes (inode, size, mtime):
        hashing every kept checkpoint on every save would cost as much as writing them."""
        key = _identity(path)
        if key is None:
            return None
        if key not in self._verified:
            self._verified[key] = self.verify(path)
        return self._verified[key]

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint that verifies; torn or corrupt ones are skipped."""
        for path in self._candidates():
            checkpoint = self.verify(path)
            if checkpoint is not None:
                return checkpoint
        return None

    def resume_point(self) -> Checkpoint | None:
        """Where to resume: the newest checkpoint that verifies. STRATUS_RESUME_FROM (what the
        last attempt reported) is only a hint: used when it verifies and is newer than anything
        here, ignored when it is missing or corrupt."""
        point = self.latest()
        hint = os.environ.get("STRATUS_RESUME_FROM")
        if hint and (point is None or Path(hint) != point.path):
            hinted = self.verify(Path(hint))
            if hinted is not None and (point is None or hinted.step > point.step):
                point = hinted
        if self.remote is not None:
            point = self._resume_remote(point)
        if point is not None:
            self._last = point
        return point

    def _resume_remote(self, local: Checkpoint | None) -> Checkpoint | None:
        """The newest checkpoint in the bucket that downloads whole and verifies, if it is
        newer than `local`; a local one newer than the bucket's is uploaded."""
        assert self.remote is not None
        try:
            if self.writes:
                self.remote.register()  # before looking: older attempts stop publishing
            listing = self.remote.listing()
        except S3Error as error:
            # Starting over silently would throw the run's progress away: stop instead.
            reason = " ".join(f"checkpoint resume failed: {error}".split())[:_REASON_LIMIT]
            with self._report_lock, contextlib.suppress(OSError):
                self.termination_log.write_text(reason)
            raise RemoteError(reason) from None
        for remote in listing:
            if local is not None and remote[0] <= local.step:
                break
            self.directory.mkdir(parents=True, exist_ok=True)
            try:
                with self._scratch() as scratch:
                    fetched = self.remote.fetch(remote, scratch)
                    shards = _agrees(scratch, fetched)
                    with self._exclusive():
                        final = self._path(fetched.step)
                        local = self._known(final) or self._publish(
                            scratch, final, fetched.step, shards
                        )
            except RemoteError as error:
                log(f"{error}; trying an older checkpoint")
                continue
            self._resumed = fetched
            if self._uploader is not None:
                self._uploader.known(fetched.step)
            log(f"resuming from {fetched.uri} (step {fetched.step}, attempt {fetched.attempt})")
            self.report(local)
            return local
        if local is not None:
            newest = listing[0] if listing else None
            log(
                f"resuming from {local.path} (step {local.step}); the bucket's newest is "
                + (f"step {newest[0]}" if newest is not None else "none")
            )
            # Uploaded again only if newer, or to finish this attempt's own upload of it.
            if (
                newest is None
                or local.step > newest[0]
                or newest == (local.step, self.remote.attempt)
            ):
                self._upload(local)
        return local

    def _upload(self, checkpoint: Checkpoint) -> None:
        if self._uploader is not None:
            self._uploader.submit(checkpoint.step, lambda: self._pinned(checkpoint))

    @contextlib.contextmanager
    def _pinned(self, checkpoint: Checkpoint) -> Iterator[tuple[Path, Mapping[str, FileEntry]]]:
        """The checkpoint's files, hard-linked into a scratch directory of this process, so that
        pruning it meanwhile does not cut its upload short. Where hard links do not work, the
        checkpoint itself (a prune then fails the upload, and the newest one is uploaded)."""
        with self._scratch() as scratch:
            root = scratch
            try:
                for source in sorted(checkpoint.path.rglob("*")):
                    target = scratch / source.relative_to(checkpoint.path)
                    if source.is_dir():
                        target.mkdir(exist_ok=True)
                    else:
                        os.link(source, target)
            except FileNotFoundError:
                raise
            except OSError:
                root = checkpoint.path
            manifest = json.loads((root / MANIFEST).read_text())
            files = {
                name: FileEntry((root / name).stat().st_size, sha)
                for name, sha in manifest["files"].items()
            }
            files[MANIFEST] = FileEntry((root / MANIFEST).stat().st_size, _digest(root / MANIFEST))
            yield root, files

    def flush(self, timeout: float | None = None) -> RemoteCheckpoint | None:
        """Wait until the newest checkpoint saved is in the bucket and return it; RemoteError if
        it could not be uploaded (within `timeout` seconds). Without a bucket, None."""
        if self._uploader is None:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._uploader.drain(deadline):
            reason = self._uploader.superseded or self._uploader.failure or "timed out"
            raise RemoteError(f"the newest checkpoint is not in the bucket: {reason}")
        return self._uploader.last

    def _prune(self, saved: Checkpoint) -> None:
        """Keep the newest `keep` checkpoints that verify (and `saved`, whatever its step); remove
        older verified ones, shard staging of steps already superseded, and what dead writers
        left. Anything that does not verify is left for a person to look at."""
        candidates = self._candidates()
        verified = [c for p in candidates if (c := self._known(p)) is not None]
        self._verified = {k: v for k, v in self._verified.items() if k[0] in candidates}
        doomed = [c for c in verified[self.keep :] if c.path != saved.path]
        removed: list[Path] = []
        with self._exclusive():
            for checkpoint in doomed:
                if self._known(checkpoint.path) == checkpoint:
                    removed += self._trash(checkpoint.path)
            if verified:
                for entry in self.directory.glob(f"{_STAGING}*"):
                    step = _step_of(entry.name, _STAGING)
                    if step is not None and step <= verified[0].step:
                        removed += self._trash(entry)
        for path in removed:
            shutil.rmtree(path, ignore_errors=True)
        self._sweep()

    def _trash(self, path: Path) -> list[Path]:
        """Move `path` out of sight in one rename, so nobody ever sees it half deleted."""
        trash = self.directory / f"{_TRASH}{os.getpid()}-{secrets.token_hex(8)}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return []  # another process moved it first
        return [trash]

    def _sweep(self) -> None:
        """Remove scratch whose writer is gone (nobody holds its lock) and trash."""
        try:
            entries = list(self.directory.iterdir())
        except OSError:
            return
        for entry in entries:
            name = entry.name
            if name.startswith(_SCRATCH) and name.endswith(_LOCK_SUFFIX):
                fd = _lock(entry, wait=False, create=False)
                if fd is None:
                    continue  # its writer is alive (or locks cannot tell): not ours to touch
                try:
                    shutil.rmtree(entry.with_name(name[: -len(_LOCK_SUFFIX)]), ignore_errors=True)
                    entry.unlink(missing_ok=True)
                finally:
                    os.close(fd)
            elif name.startswith(_SCRATCH):
                # A writer creates its lock before its scratch and removes it after: scratch
                # without a lock has no writer.
                if not entry.with_name(name + _LOCK_SUFFIX).exists():
                    shutil.rmtree(entry, ignore_errors=True)
            elif name.startswith(_TRASH):
                shutil.rmtree(entry, ignore_errors=True)

    @contextlib.contextmanager
    def _scratch(self) -> Iterator[Path]:
        """A directory only this process writes, locked for as long as it exists."""
        while True:
            path = self.directory / f"{_SCRATCH}{os.getpid()}-{secrets.token_hex(8)}"
            lock = path.with_name(path.name + _LOCK_SUFFIX)
            fd = _lock(lock, wait=True, create=True)
            if fd is not None:
                break
        try:
            path.mkdir()
            try:
                yield path
            finally:
                shutil.rmtree(path, ignore_errors=True)  # already gone once published
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()
            os.close(fd)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """The directory lock: publishing and pruning are short and done by one process at a
        time. A SIGTERM handler installed by `on_sigterm` waits for the end of it."""
        _SHUTDOWN.depth += 1
        try:
            while (fd := _lock(self.directory / _DIRECTORY_LOCK, wait=True, create=True)) is None:
                pass  # the file was replaced while we waited: lock the one in place now
            try:
                yield
            finally:
                os.close(fd)
        finally:
            _SHUTDOWN.depth -= 1
            if _SHUTDOWN.depth == 0 and _SHUTDOWN.pending is not None:
                stop, _SHUTDOWN.pending = _SHUTDOWN.pending, None
                stop()

    def report(self, checkpoint: Checkpoint) -> None:
        """Leave the checkpoint in the termination message, where Stratus reads it."""
        self._last = checkpoint
        self._write_report()

    def _fields(self) -> dict[str, object]:
        """What the termination message says: the newest checkpoint this process knows that
        outlives it. With a bucket that is the newest uploaded (or resumed from), with the
        newer local one, if any, as `pending`; the step resumed from as `resumed_from`."""
        if self.remote is None:
            return self._last._fields() if self._last is not None else {}
        uploaded = self._uploader.last if self._uploader is not None else None
        safe = max(
            (c for c in (uploaded, self._resumed) if c is not None),
            key=lambda c: c.step,
            default=None,
        )
        fields: dict[str, object] = {}
        if safe is not None:
            fields = safe.fields()
        elif self._last is not None:
            fields = self._last._fields()
        if self._last is not None and (safe is None or self._last.step > safe.step):
            fields["pending"] = {"path": str(self._last.path), "step": self._last.step}
        if self._resumed is not None:
            fields["resumed_from"] = {"path": self._resumed.uri, "step": self._resumed.step}
        if self._uploader is not None and self._uploader.superseded is not None:
            fields["error"] = str(self._uploader.superseded)
        return fields

    def _write_report(self, error: str | None = None) -> None:
        fields = self._fields()
        if error is not None:
            fields["error"] = error
        message = json.dumps(fields) if "path" in fields else fields.get("error", "")
        with self._report_lock, contextlib.suppress(OSError):
            self.termination_log.write_text(str(message))

    def _report_failure(self, error: BaseException) -> None:
        """The reason a save failed, in one line, next to the newest checkpoint this process
        knows (so Stratus still records where to resume)."""
        reason = " ".join(f"checkpoint save failed: {type(error).__name__}: {error}".split())
        reason = reason[:_REASON_LIMIT]
        print(reason, file=sys.stderr)
        self._write_report(reason)

    def _finish_uploads(self, started: float) -> None:
        """On SIGTERM: wait for the uploads within the grace period, then say how it went."""
        if self._uploader is None or self._uploader.pending_step is None:
            return
        budget = self.grace_seconds - _grace_margin(self.grace_seconds)
        if self._uploader.drain(started + budget) or self._uploader.superseded is not None:
            return  # the message says so already
        pending = self._uploader.pending_step
        newest = self._uploader.last or self._resumed
        reason = self._uploader.failure or (
            f"the upload of step {pending} did not finish within the grace period "
            f"({self.grace_seconds:g}s)"
        )
        where = f"; step {newest.step} is the newest in the bucket" if newest else ""
        log(reason + where)
        self._write_report(reason[:_REASON_LIMIT])

    def on_sigterm(self, save: Callable[[], Checkpoint | None]) -> None:
        """On SIGTERM (spot notice, eviction, suspend): run `save`, report what it saved, and
        exit with 143 so the attempt counts as stopped, not as finished. If `save` fails, the
        reason goes to the termination message and the exit code is still 143. With a bucket,
        the exit waits for the upload until the grace period (less a margin) is spent."""

        def stop(started: float) -> None:
            try:
                checkpoint = save()
                if checkpoint is not None:
                    self.report(checkpoint)
            except BaseException as error:  # noqa: BLE001 - whatever happened, exit 143
                self._report_failure(error)
            try:
                self._finish_uploads(started)
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(PREEMPTED_EXIT_CODE)

        def handler(_signum: int, _frame: FrameType | None) -> None:
            started = time.monotonic()  # the grace period runs from here
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second notice must not restart it
            if _SHUTDOWN.depth:
                _SHUTDOWN.pending = lambda: stop(started)
                return
            stop(started)

        signal.signal(signal.SIGTERM, handler)


def save_state_dict(state: object, directory: Path, name: str = "state.pt") -> None:
    """Write a PyTorch state_dict (or any torch-serializable object) into a checkpoint
    directory; for use as, or inside, the `write` callback. Needs torch."""
    import torch  # noqa: PLC0415 - optional: only programs that use PyTorch call this

    torch.save(state, directory / name)


def load_state_dict(checkpoint: Checkpoint | Path, name: str = "state.pt") -> object:
    """Read what `save_state_dict` wrote: from a checkpoint, or from a directory such as
    `CheckpointManager.shard_path(checkpoint)`."""
    import torch  # noqa: PLC0415

    directory = checkpoint.path if isinstance(checkpoint, Checkpoint) else checkpoint
    return torch.load(directory / name, map_location="cpu", weights_only=True)
