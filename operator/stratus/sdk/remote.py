"""Checkpoints in object storage: each local checkpoint is uploaded in the background, its files
first and its manifest last, so that a checkpoint exists in the bucket only once it is whole.

Layout under `s3://<bucket>/<prefix>/`:

    attempts/<attempt>                       one empty object per attempt that writes
    step-<step>-a<attempt>/<file>            the files, each with its sha256 as metadata
    manifests/step-<step>-a<attempt>.json    size and sha256 of every file, written last

Every object's key names the attempt that wrote it, so two attempts never write the same object
and need no conditional writes (which not every S3-compatible store has). The newest checkpoint
is the highest (step, attempt) among the manifests of attempts up to the reader's own. An attempt
registers itself before it looks for a checkpoint to resume from; an older attempt still running
(a zombie on a lost node) checks the registrations before and after it writes a manifest, and
withdraws it when a newer attempt has registered: once an attempt has started, only it adds
checkpoints.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from stratus.sdk.s3 import S3Client, S3Error

FORMAT = "stratus-checkpoint/1"
_NAME = re.compile(r"step-(\d{12})-a(\d{6})")
_MANIFESTS = "manifests/"
_ATTEMPTS = "attempts/"

# (step, attempt): a checkpoint in the bucket; ordered as the newest is chosen.
Id = tuple[int, int]


class RemoteError(Exception):
    """A remote checkpoint that cannot be used, in one line."""


class Superseded(Exception):
    """A newer attempt has registered: this one no longer adds checkpoints."""

    def __init__(self, attempt: int, step: int) -> None:
        super().__init__(f"superseded by attempt {attempt}: step {step} was not published")
        self.attempt = attempt
        self.step = step


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


@dataclass(frozen=True)
class RemoteCheckpoint:
    uri: str
    step: int
    attempt: int
    sha256: str  # of the manifest object
    files: Mapping[str, FileEntry] = field(default_factory=dict, compare=False)

    def fields(self) -> dict[str, object]:
        return {"path": self.uri, "step": self.step, "sha256": self.sha256}


def name(checkpoint: Id) -> str:
    step, attempt = checkpoint
    return f"step-{step:012d}-a{attempt:06d}"


def parse_name(text: str) -> Id | None:
    match = _NAME.fullmatch(text)
    return (int(match[1]), int(match[2])) if match else None


def _safe(relative: str) -> bool:
    """A path that stays inside the directory it is downloaded to."""
    path = PurePosixPath(relative)
    return (
        bool(relative)
        and not path.is_absolute()
        and all(part not in ("", ".", "..") for part in relative.split("/"))
        and "\\" not in relative
        and "\x00" not in relative
    )


def build_manifest(checkpoint: Id, files: Mapping[str, FileEntry]) -> bytes:
    step, attempt = checkpoint
    entries = {k: {"size": v.size, "sha256": v.sha256} for k, v in sorted(files.items())}
    document = {"format": FORMAT, "step": step, "attempt": attempt, "files": entries}
    return json.dumps(document, sort_keys=True).encode()


def parse_manifest(data: bytes, checkpoint: Id) -> dict[str, FileEntry]:
    """The files of a manifest, or ValueError saying why it is not the manifest of
    `checkpoint`."""
    try:
        document = json.loads(data)
    except ValueError:
        raise ValueError("its manifest is not JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"its manifest is not {FORMAT}")
    if (document.get("step"), document.get("attempt")) != checkpoint:
        raise ValueError("its manifest names another step or attempt")
    raw = document.get("files")
    if not isinstance(raw, dict) or not raw:
        raise ValueError("its manifest lists no files")
    files: dict[str, FileEntry] = {}
    for relative, entry in raw.items():
        size = entry.get("size") if isinstance(entry, dict) else None
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if not _safe(relative) or not isinstance(size, int) or size < 0 or not isinstance(sha, str):
            raise ValueError(f"its manifest has an invalid entry {relative!r}")
        files[relative] = FileEntry(size, sha)
    return files


def visible(checkpoints: list[Id], attempt: int) -> list[Id]:
    """What an attempt may resume from, newest first: checkpoints of attempts up to its own
    (a newer attempt's are not its past)."""
    return sorted((c for c in checkpoints if c[1] <= attempt), reverse=True)


def retention(
    manifests: Mapping[Id, Mapping[str, FileEntry] | None],
    data: Mapping[Id, Mapping[str, int]],
    attempt: int,
    keep: int,
) -> tuple[list[Id], list[Id]]:
    """What to delete: the complete checkpoints past the newest `keep`, and the files without a
    manifest that older attempts left (an upload cut short). A checkpoint counts as complete
    when every file its manifest lists is there with its size; a manifest that does not parse
    or misses a file is left alone, and so is everything of newer attempts, and the files of
    this attempt's uploads, which may be in progress."""
    complete = [
        c
        for c in visible(list(manifests), attempt)
        if (files := manifests[c]) is not None
        and all(data.get(c, {}).get(k) == v.size for k, v in files.items())
    ]
    doomed = complete[max(1, keep) :]
    orphans = sorted(
        c for c in data if c not in manifests and c[1] < attempt and complete and c < complete[0]
    )
    return doomed, orphans


def log(message: str) -> None:
    """One line of the SDK's own on stderr."""
    print(f"stratus checkpoint: {message}", file=sys.stderr, flush=True)


class RemoteStore:
    """The checkpoints of one prefix, seen and written by one attempt."""

    def __init__(
        self,
        client: S3Client,
        prefix: str,
        attempt: int,
        keep: int,
        log: Callable[[str], None] = log,
    ) -> None:
        self.client = client
        self.prefix = f"{prefix}/" if prefix else ""
        self.attempt = max(0, attempt)
        self.keep = max(1, keep)
        self.log = log
        self._registered = False
        self._manifests: dict[tuple[Id, str], Mapping[str, FileEntry] | None] = {}

    def uri(self, checkpoint: Id) -> str:
        return self.client.uri(f"{self.prefix}{name(checkpoint)}/")

    def _manifest_key(self, checkpoint: Id) -> str:
        return f"{self.prefix}{_MANIFESTS}{name(checkpoint)}.json"

    def register(self) -> None:
        """Record that this attempt writes here (before it looks for a checkpoint, so that an
        older attempt stops publishing), and abort the multipart uploads older attempts left."""
        if self._registered:
            return
        self.client.put_object(f"{self.prefix}{_ATTEMPTS}{self.attempt:010d}", b"")
        self._registered = True
        self._abort_stale(None)

    def _abort_stale(self, uploaded: int | None) -> None:
        """Abort the unfinished multipart uploads of older attempts, and, once this attempt has
        uploaded step `uploaded`, its own of that step or older (an earlier process of this
        attempt, killed mid-upload): only this process uploads for this attempt now."""
        try:
            uploads = self.client.list_multipart_uploads(self.prefix)
        except S3Error as error:  # a store without the call: failed uploads abort themselves
            self.log(f"cannot list unfinished uploads: {error}")
            return
        for upload in uploads:
            owner = parse_name(upload.key[len(self.prefix) :].split("/", 1)[0])
            if owner is None or owner[1] > self.attempt:
                continue
            if owner[1] < self.attempt or (uploaded is not None and owner[0] <= uploaded):
                self.client.abort_multipart_upload(upload)

    def newer_attempt(self) -> int | None:
        objects, _ = self.client.list_objects(f"{self.prefix}{_ATTEMPTS}")
        attempts = [int(t) for o in objects if (t := o.key.rsplit("/", 1)[-1]).isdigit()]
        newest = max(attempts, default=-1)
        return newest if newest > self.attempt else None

    def listing(self) -> list[Id]:
        """The manifests this attempt may resume from, newest first."""
        objects, _ = self.client.list_objects(f"{self.prefix}{_MANIFESTS}")
        found = [
            c
            for o in objects
            if o.key.endswith(".json")
            and (c := parse_name(o.key.rsplit("/", 1)[-1].removesuffix(".json")))
        ]
        return visible(found, self.attempt)

    def fetch(self, checkpoint: Id, into: Path) -> RemoteCheckpoint:
        """Download a checkpoint into the empty directory `into` and check every file against
        its manifest; RemoteError says what is wrong."""
        uri = self.uri(checkpoint)
        try:
            body = self.client.get_object(self._manifest_key(checkpoint))
            files = parse_manifest(body, checkpoint)
        except (S3Error, ValueError) as error:
            raise RemoteError(f"{uri}: {error}") from None
        base = f"{self.prefix}{name(checkpoint)}/"

        def get(relative: str) -> None:
            entry = files[relative]
            target = into / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            sha = hashlib.sha256()
            try:
                self.client.download_file(base + relative, target, entry.size, sha.update)
            except S3Error as error:
                raise RemoteError(f"{uri}: {relative}: {error}") from None
            if sha.hexdigest() != entry.sha256:
                raise RemoteError(f"{uri}: {relative}: sha256 differs from its manifest")

        self._each(files, get)
        return RemoteCheckpoint(uri, *checkpoint, hashlib.sha256(body).hexdigest(), files)

    def _each(self, files: Mapping[str, FileEntry], work: Callable[[str], None]) -> None:
        """`work` on every file: small ones several at a time, large ones one by one (each is
        already transferred in parallel parts), so memory stays within the client's bound."""
        small = sorted(k for k, v in files.items() if v.size <= self.client.part_size)
        with ThreadPoolExecutor(self.client.concurrency, thread_name_prefix="stratus-s3") as pool:
            list(pool.map(work, small))
        for relative in sorted(set(files) - set(small)):
            work(relative)

    def upload(
        self, directory: Path, step: int, files: Mapping[str, FileEntry]
    ) -> RemoteCheckpoint:
        """Upload the checkpoint in `directory`: the files not already there (same size and
        sha256), then the manifest. Raises Superseded once a newer attempt has registered."""
        self.register()
        checkpoint = (step, self.attempt)
        if (newer := self.newer_attempt()) is not None:
            raise Superseded(newer, step)
        base = f"{self.prefix}{name(checkpoint)}/"
        present = {o.key[len(base) :]: o.size for o in self.client.list_objects(base)[0]}

        def put(relative: str) -> None:
            entry = files[relative]
            if present.get(relative) == entry.size:
                head = self.client.head_object(base + relative)
                if head is not None and head.metadata.get("sha256") == entry.sha256:
                    return  # uploaded by an earlier try of this attempt
            self.client.upload_file(directory / relative, base + relative, {"sha256": entry.sha256})

        self._each(files, put)
        body = build_manifest(checkpoint, files)
        if (newer := self.newer_attempt()) is not None:
            raise Superseded(newer, step)
        key = self._manifest_key(checkpoint)
        self.client.put_object(key, body)
        if (newer := self.newer_attempt()) is not None:
            self.client.delete_object(key)  # a newer attempt may not have seen it: withdraw it
            raise Superseded(newer, step)
        return RemoteCheckpoint(
            self.uri(checkpoint), step, self.attempt, hashlib.sha256(body).hexdigest(), files
        )

    def _files_of(self, checkpoint: Id, etag: str) -> Mapping[str, FileEntry] | None:
        cached = (checkpoint, etag)
        if cached not in self._manifests:
            try:
                body = self.client.get_object(self._manifest_key(checkpoint))
                self._manifests[cached] = parse_manifest(body, checkpoint)
            except ValueError:
                self._manifests[cached] = None
        return self._manifests[cached]

    def prune(self, uploaded: int) -> list[Id]:
        """After step `uploaded` is in the bucket: apply `retention` (a manifest goes before its
        files, so a checkpoint being deleted stops counting first), and abort stale multipart
        uploads. Returns what was deleted."""
        self._abort_stale(uploaded)
        objects, _ = self.client.list_objects(self.prefix)
        manifests: dict[Id, Mapping[str, FileEntry] | None] = {}
        data: dict[Id, dict[str, int]] = {}
        keys: dict[Id, list[str]] = {}
        for obj in objects:
            rest = obj.key[len(self.prefix) :]
            if rest.startswith(_MANIFESTS) and rest.endswith(".json"):
                checkpoint = parse_name(rest[len(_MANIFESTS) : -len(".json")])
                if checkpoint is not None and checkpoint[1] <= self.attempt:
                    manifests[checkpoint] = self._files_of(checkpoint, obj.etag)
                continue
            top, _, relative = rest.partition("/")
            checkpoint = parse_name(top)
            if checkpoint is not None and relative:
                data.setdefault(checkpoint, {})[relative] = obj.size
                keys.setdefault(checkpoint, []).append(obj.key)
        doomed, orphans = retention(manifests, data, self.attempt, self.keep)
        for checkpoint in doomed:
            self.client.delete_object(self._manifest_key(checkpoint))
        for checkpoint in [*doomed, *orphans]:
            for key in keys.get(checkpoint, []):
                self.client.delete_object(key)
        return [*doomed, *orphans]


Pin = Callable[[], AbstractContextManager[tuple[Path, Mapping[str, FileEntry]]]]


class Uploader:
    """One background thread that uploads the newest checkpoint submitted; older ones still
    waiting are skipped (the newest makes them moot). A failed upload is retried, with a
    growing pause, until it succeeds, a newer one is submitted, or `give_up_after` seconds of
    failures; a newer attempt's registration stops it for good."""

    def __init__(
        self,
        store: RemoteStore,
        on_change: Callable[[], None],
        log: Callable[[str], None] = log,
        give_up_after: float = 300.0,
    ) -> None:
        self.store = store
        self.on_change = on_change
        self.log = log
        self.give_up_after = give_up_after
        self.last: RemoteCheckpoint | None = None
        self.superseded: Superseded | None = None
        self.failure: str | None = None
        # Reentrant: the SIGTERM handler runs on the main thread, possibly inside `submit`.
        self._cond = threading.Condition(threading.RLock())
        self._pending: tuple[int, Pin] | None = None
        self._floor = -1  # steps up to this one are in the bucket already
        self._busy = False
        self._pruning = False  # a normal exit waits for it, a SIGTERM does not
        self._thread: threading.Thread | None = None

    def known(self, step: int) -> None:
        """`step` is in the bucket already (resumed from, say): saving it again uploads nothing."""
        with self._cond:
            self._floor = max(self._floor, step)

    def submit(self, step: int, pin: Pin) -> None:
        with self._cond:
            if self.superseded is not None or step <= self._floor:
                return
            if self._pending is not None and self._pending[0] > step:
                return
            self._pending = (step, pin)
            self.failure = None
            self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="stratus-checkpoint-upload", daemon=True
                )
                self._thread.start()
                atexit.register(self._at_exit)

    @property
    def pending_step(self) -> int | None:
        with self._cond:
            return self._pending[0] if self._pending is not None else None

    def drain(self, deadline: float | None = None) -> bool:
        """Wait until everything submitted is uploaded (True), or the uploads stopped or gave
        up, or `deadline` (time.monotonic()) passed (False)."""
        with self._cond:
            while self._pending is not None or self._busy:
                if self.superseded is not None:
                    return False
                if self.failure is not None and not self._busy and self._pending is None:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return self.superseded is None and self.failure is None

    def _at_exit(self) -> None:
        if not self.drain():
            self.log("the newest checkpoint was not uploaded before exit")
        with self._cond:
            while self._pruning:
                self._cond.wait()

    def _run(self) -> None:
        failing: tuple[int, float] | None = None  # the step that fails, and since when
        pause = 1.0
        while True:
            with self._cond:
                while self._pending is None:
                    self._cond.wait()
                step, pin = self._pending
                self._busy = True
            try:
                with pin() as (directory, files):
                    uploaded = self.store.upload(directory, step, files)
            except Superseded as stop:
                self._stop(stop)
                return
            except (S3Error, OSError, ValueError) as error:
                if failing is None or failing[0] != step:
                    failing, pause = (step, time.monotonic()), 1.0
                self._failed(step, pin, error, time.monotonic() - failing[1], pause)
                pause = min(60.0, pause * 2)
                continue
            failing = None
            self._done(uploaded)
            self._prune(uploaded.step)

    def _stop(self, stop: Superseded) -> None:
        self.log(str(stop))
        with self._cond:
            self.superseded = stop
        self.on_change()  # before anyone waiting wakes up and exits
        with self._cond:
            self._pending, self._busy = None, False
            self._cond.notify_all()

    def _failed(self, step: int, pin: Pin, error: Exception, failing: float, pause: float) -> None:
        reason = " ".join(f"upload of step {step} failed: {error}".split())
        with self._cond:
            self._busy = False
            self.failure = reason
            if failing >= self.give_up_after and self._pending == (step, pin):
                self._pending = None
                self.log(f"{reason}; giving up after {self.give_up_after:.0f}s")
            else:
                self.log(f"{reason}; retrying in {pause:.0f}s")
            self._cond.notify_all()
            self._cond.wait(pause)  # a newer submit wakes it at once

    def _done(self, uploaded: RemoteCheckpoint) -> None:
        with self._cond:
            if self.last is None or uploaded.step >= self.last.step:
                self.last = uploaded
            self._floor = max(self._floor, uploaded.step)
            self.failure = None
        self.on_change()  # before anyone waiting wakes up and exits
        with self._cond:
            if self._pending is not None and self._pending[0] <= uploaded.step:
                self._pending = None
            self._busy = False
            self._pruning = True
            self._cond.notify_all()

    def _prune(self, uploaded: int) -> None:
        try:
            for gone in self.store.prune(uploaded):
                self.log(f"removed {self.store.uri(gone)} (retention)")
        except (S3Error, OSError, ValueError) as error:
            self.log(f"retention in the bucket failed: {error}")
        finally:
            with self._cond:
                self._pruning = False
                self._cond.notify_all()
