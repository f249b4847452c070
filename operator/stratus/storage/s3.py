"""Models from object storage through the S3 API: `s3://` (AWS S3, or any S3-compatible store at
an endpoint) and `gs://` (Google Cloud Storage's S3-compatible API at storage.googleapis.com,
with HMAC keys).

`<scheme>://<bucket>/<key>` is one object; `<scheme>://<bucket>/<prefix>/` (a trailing slash) is
a directory: exactly the files its `stratus-manifest.json` lists, each checked against the size
and SHA-256 written there. The manifest is

    {"files": {"config.json": {"size": 1187, "sha256": "<64 hex>"},
               "weights/model-00001.safetensors": {"size": 4976698672, "sha256": "..."}}}

(`python -m stratus.storage manifest DIR` writes it for a directory before its upload). Objects
are downloaded in parallel, in ranged parts, with bounded concurrency and memory (s3transfer),
each part pinned to the ETag seen first so an object replaced mid-download fails rather than
mixes. Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_REGION) or the pod's cloud identity; the endpoint from the caller or AWS_ENDPOINT_URL.

boto3 is imported only here, and only when such a model is staged: the operator never needs it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from stratus.storage.errors import StagingError

MANIFEST = "stratus-manifest.json"
GCS_ENDPOINT = "https://storage.googleapis.com"
# Parts in flight at once, across every file of a directory: bounds connections and memory.
CONCURRENCY = 8
PART_SIZE = 16 << 20
# Ranged parts wait in a queue of io chunks to be written: at most this many, of 256 KiB each.
IO_QUEUE = 64
MAX_MANIFEST_BYTES = 16 << 20
MAX_FILES = 100_000
MAX_PATH = 1024
CHANGED = "{what} changed while it was downloaded (its ETag no longer matches)"
# The store's answers that mean there is no such object (a HEAD's error has only its status).
MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
# The store's answers that mean the keys (or the bucket's policy) do not allow the request.
DENIED = frozenset({"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One file of a directory model, as its manifest lists it."""

    path: PurePosixPath
    size: int
    sha256: str


@dataclass(frozen=True)
class _Object:
    key: str
    target: Path
    size: int
    etag: str | None


def endpoint_for(scheme: str, endpoint: str | None) -> str | None:
    """The store to call: the one given, else AWS_ENDPOINT_URL, else GCS's for gs:// (None:
    AWS S3 itself)."""
    chosen = endpoint or os.environ.get("AWS_ENDPOINT_URL") or None
    if chosen is None and scheme == "gs":
        return GCS_ENDPOINT
    return chosen.rstrip("/") if chosen else None


def parse_manifest(data: bytes, where: str) -> list[Entry]:
    """A directory's manifest, checked: every path relative and inside the directory, every
    size a non-negative integer, every digest 64 lowercase hex digits."""
    try:
        files = json.loads(data)["files"]
    except (ValueError, TypeError, KeyError) as exc:
        raise StagingError(
            f'{where}: not a manifest: expected {{"files": {{"<path>": {{"size": N, '
            f'"sha256": "<hex>"}}}}}} ({type(exc).__name__})'
        ) from exc
    if not isinstance(files, dict) or not files:
        raise StagingError(f"{where}: lists no files")
    if len(files) > MAX_FILES:
        raise StagingError(f"{where}: lists {len(files)} files, more than {MAX_FILES}")
    entries = [_entry(name, value, where) for name, value in files.items()]
    files_at = {e.path for e in entries}
    for entry in entries:
        clash = next((p for p in entry.path.parents if p in files_at), None)
        if clash is not None:
            raise StagingError(f"{where}: {clash} is listed as a file and as a directory")
    return entries


def _entry(name: object, value: object, where: str) -> Entry:
    if (
        not isinstance(name, str)
        or not name
        or len(name) > MAX_PATH
        or name.startswith("/")
        or any(part in ("", ".", "..") for part in name.split("/"))
        or any(ord(c) < 32 for c in name)
    ):
        raise StagingError(
            f"{where}: {name!r} is not a relative path inside the directory "
            "(no leading '/', no '.', '..' or empty parts)"
        )
    if name == MANIFEST:
        raise StagingError(f"{where}: lists itself")
    if not isinstance(value, dict):
        raise StagingError(f"{where}: {name}: expected {{'size': N, 'sha256': '<hex>'}}")
    size, sha = value.get("size"), value.get("sha256")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise StagingError(f"{where}: {name}: size must be a whole number of bytes")
    if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
        raise StagingError(f"{where}: {name}: sha256 must be 64 lowercase hex digits")
    return Entry(PurePosixPath(name), size, sha)


def manifest_of(directory: Path) -> dict[str, Any]:
    """The manifest of every regular file under `directory` (symlinks followed), the manifest
    itself left out."""
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).as_posix()
        if path.is_file() and relative != MANIFEST:
            files[relative] = {"size": path.stat().st_size, "sha256": sha256_of(path)}
    return {"files": files}


def write_manifest(directory: Path) -> Path:
    """Write `directory`'s manifest into it, for uploading beside its files."""
    if not directory.is_dir():
        raise StagingError(f"{directory} is not a directory")
    manifest = manifest_of(directory)
    if not manifest["files"]:
        raise StagingError(f"{directory} holds no files")
    path = directory / MANIFEST
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return path


def sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            sha.update(block)
    return sha.hexdigest()


class _Store:
    """One bucket through one client, every failure turned into a one-line StagingError."""

    def __init__(self, uri: str, shown: str, endpoint: str | None, concurrency: int) -> None:
        parsed = urllib.parse.urlsplit(uri)
        self.scheme, self.bucket = parsed.scheme, parsed.netloc
        self.key = parsed.path.lstrip("/")
        self.shown = shown
        self.endpoint = endpoint_for(self.scheme, endpoint)
        self.concurrency = concurrency
        try:
            import boto3  # noqa: PLC0415 - only staging from object storage needs it
            import botocore.config  # noqa: PLC0415
            import botocore.exceptions  # noqa: PLC0415
            import s3transfer.exceptions  # noqa: PLC0415
            import s3transfer.manager  # noqa: PLC0415
            import s3transfer.subscribers  # noqa: PLC0415
        except ImportError as exc:
            raise StagingError(
                f"{shown}: {self.scheme}:// needs boto3 in the staging image ({exc})"
            ) from exc
        self.errors = botocore.exceptions
        self.transfer = s3transfer
        self.failures: tuple[type[Exception], ...] = (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
            s3transfer.exceptions.RetriesExceededError,
            s3transfer.exceptions.S3DownloadFailedError,
            s3transfer.exceptions.S3ValidationError,
        )
        config = botocore.config.Config(
            connect_timeout=10,
            read_timeout=60,
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=concurrency + 2,
            user_agent_extra="stratus-storage",
            # Stores other than AWS (GCS among them) differ in the checksums they take and
            # send; the SHA-256 of the manifest or the spec is what is checked.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # A custom endpoint's host is the store, not <bucket>.<host> (which needs DNS).
            s3={"addressing_style": "path"} if self.endpoint else {},
        )
        try:
            self.client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint, config=config
            )
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            raise StagingError(f"{shown}: {exc}") from exc

    @property
    def directory(self) -> bool:
        return self.key == "" or self.key.endswith("/")

    def call(self, what: str, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except self.failures as exc:
            raise StagingError(f"{self.shown}: {self.describe(what, exc)}") from exc

    def describe(self, what: str, exc: BaseException) -> str:
        """Why a request failed, in words a user acts on; never a credential."""
        errors = self.errors
        last = getattr(exc, "last_exception", None)
        if isinstance(exc, self.transfer.exceptions.RetriesExceededError) and last is not None:
            return f"{self.describe(what, last)} (retries exhausted)"
        if isinstance(exc, errors.NoCredentialsError | errors.PartialCredentialsError):
            return (
                f"no credentials for {what}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(the model's credentialsSecret) or give the pod a cloud identity"
            )
        if isinstance(exc, errors.ClientError):
            return self._refusal(what, exc.response)
        if isinstance(exc, self.transfer.exceptions.S3DownloadFailedError) and "ETag" in str(exc):
            return CHANGED.format(what=what)
        if isinstance(exc, errors.EndpointConnectionError | errors.ConnectTimeoutError):
            return f"cannot reach {self.endpoint or 'AWS S3'}: {exc}"
        return f"{what}: {exc}"

    def _refusal(self, what: str, response: dict[str, Any]) -> str:
        """What the store's error answer means."""
        error = response.get("Error") or {}
        code = _code(response)
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if code in MISSING and not self._bucket_exists():
            return f"bucket {self.bucket} not found"
        if code in MISSING:
            hint = ""
            if what == self.key and not self.directory:
                hint = " (for a directory model, end the URI with '/')"
            return f"{what} not found in bucket {self.bucket}{hint}"
        if code == "NoSuchBucket":
            return f"bucket {self.bucket} not found"
        if code in ("412", "PreconditionFailed"):
            return CHANGED.format(what=what)
        if status == 403 or code in DENIED:
            reason = code if code and code != "403" else "403 Forbidden"
            return (
                f"access to {what} denied ({reason}): check the keys in the model's "
                "credentialsSecret and the bucket's permissions"
            )
        message = str(error.get("Message") or "")
        return " ".join(f"{what}: {status or ''} {code} {message}".split())

    def _bucket_exists(self) -> bool:
        """False only when the store says the bucket is missing: a HEAD's 404 cannot tell a
        missing object from a missing bucket."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self.errors.ClientError as exc:
            return _code(exc.response) not in (*MISSING, "NoSuchBucket")
        except self.errors.BotoCoreError:
            return True
        return True

    def head(self, key: str) -> tuple[int, str | None]:
        found = self.call(key, lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        return int(found["ContentLength"]), found.get("ETag")

    def read_small(self, key: str, limit: int) -> bytes | None:
        """The object `key` if it is at most `limit` bytes; None if there is none."""

        def read() -> bytes | None:
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            except self.errors.ClientError as exc:
                if _code(exc.response) in MISSING:
                    return None
                raise
            try:
                data: bytes = body.read(limit + 1)
            finally:
                body.close()
            return data

        data: bytes | None = self.call(key, read)
        if data is not None and len(data) > limit:
            raise StagingError(f"{self.shown}: {key} is larger than {limit} bytes")
        return data

    def download(self, objects: Iterable[_Object]) -> None:
        """Every object into its target, at once: the parts of all of them share
        `concurrency` connections. The first failure cancels the rest."""
        manager_mod = self.transfer.manager
        config = manager_mod.TransferConfig(
            multipart_threshold=PART_SIZE,
            multipart_chunksize=PART_SIZE,
            max_request_concurrency=self.concurrency,
            max_io_queue_size=IO_QUEUE,
        )
        base = self.transfer.subscribers.BaseSubscriber

        class Known(base):  # type: ignore[misc,valid-type]
            """Tells the transfer what the HEAD said, so it asks nothing more and pins every
            ranged part to the ETag."""

            def __init__(self, size: int, etag: str | None) -> None:
                self.size, self.etag = size, etag

            def on_queued(self, future: Any, **kwargs: Any) -> None:
                future.meta.provide_transfer_size(self.size)
                if self.etag:
                    future.meta.provide_object_etag(self.etag)

        with manager_mod.TransferManager(self.client, config) as manager:
            pending = [
                (
                    item,
                    manager.download(
                        self.bucket,
                        item.key,
                        str(item.target),
                        subscribers=[Known(item.size, item.etag)],
                    ),
                )
                for item in objects
            ]
            for item, future in pending:
                self.call(item.key, future.result)


def _code(response: dict[str, Any]) -> str:
    return str((response.get("Error") or {}).get("Code") or "")


def fetch(
    uri: str,
    shown: str,
    target: Path,
    sha256: str | None = None,
    max_bytes: int | None = None,
    endpoint: str | None = None,
    concurrency: int = CONCURRENCY,
) -> None:
    """Stage the object or directory `uri` at `target`. `sha256` is the object's digest, or for
    a directory its manifest's. Every failure is a StagingError naming the object and why."""
    store = _Store(uri, shown, endpoint, concurrency)
    if store.directory:
        _fetch_directory(store, target, sha256, max_bytes)
    else:
        _fetch_object(store, target, sha256, max_bytes)


def _over(size: int, max_bytes: int | None) -> bool:
    return max_bytes is not None and size > max_bytes


def _fetch_object(store: _Store, target: Path, sha256: str | None, max_bytes: int | None) -> None:
    size, etag = store.head(store.key)
    if _over(size, max_bytes):
        raise StagingError(f"{store.shown}: {size} bytes, over the size limit of {max_bytes} bytes")
    store.download([_Object(store.key, target, size, etag)])
    _check(store.shown, target, size, sha256)


def _fetch_directory(
    store: _Store, target: Path, sha256: str | None, max_bytes: int | None
) -> None:
    data = store.read_small(store.key + MANIFEST, MAX_MANIFEST_BYTES)
    if data is None:
        raise StagingError(
            f"{store.shown}: no {MANIFEST} in this prefix: a directory model lists its files "
            "there, with their sizes and SHA-256 (python -m stratus.storage manifest DIR "
            "writes it)"
        )
    actual = hashlib.sha256(data).hexdigest()
    if sha256 is not None and actual != sha256.lower():
        raise StagingError(
            f"{store.shown}: {MANIFEST}: sha256 mismatch: expected {sha256.lower()}, got {actual}"
        )
    entries = parse_manifest(data, f"{store.shown}: {MANIFEST}")
    total = sum(e.size for e in entries)
    if _over(total, max_bytes):
        raise StagingError(
            f"{store.shown}: {total} bytes ({MANIFEST}), over the size limit of {max_bytes} bytes"
        )
    target.mkdir()
    for entry in entries:
        (target / entry.path).parent.mkdir(parents=True, exist_ok=True)
    keys = {e.path: store.key + e.path.as_posix() for e in entries}
    with ThreadPoolExecutor(store.concurrency) as pool:
        heads = list(pool.map(lambda e: store.head(keys[e.path]), entries))
    for entry, (size, _) in zip(entries, heads, strict=True):
        if size != entry.size:
            raise StagingError(
                f"{store.shown}: {entry.path}: {size} bytes in the bucket, {entry.size} in "
                f"{MANIFEST}"
            )
    store.download(
        _Object(keys[e.path], target / e.path, e.size, etag)
        for e, (_, etag) in zip(entries, heads, strict=True)
    )
    with ThreadPoolExecutor(store.concurrency) as pool:
        list(
            pool.map(
                lambda e: _check(f"{store.shown}: {e.path}", target / e.path, e.size, e.sha256),
                entries,
            )
        )
    (target / MANIFEST).write_bytes(data)


def _check(where: str, path: Path, size: int, sha256: str | None) -> None:
    """The file has the size it was said to have and, when one is expected, the digest."""
    got = path.stat().st_size
    if got != size:
        raise StagingError(f"{where}: {got} bytes arrived, {size} expected")
    if sha256 is None:
        return
    actual = sha256_of(path)
    if actual != sha256.lower():
        raise StagingError(f"{where}: sha256 mismatch: expected {sha256.lower()}, got {actual}")
