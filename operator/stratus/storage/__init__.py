"""Model staging: fetch a model from its URI into a local directory, verify its sha256, and fail
with a message that says what went wrong. The InferenceService's init container runs it as
`python -m stratus.storage fetch --uri URI --dest DIR [--sha256 HEX] [--ca-file PEM]`."""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

CHUNK = 1 << 20
# Where the init container mounts the claim of a pvc:// model.
PVC_ROOT = Path("/mnt/model-source")


class StagingError(RuntimeError):
    pass


def _sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            sha.update(block)
    return sha.hexdigest()


def _tls_context(ca_file: Path | None) -> ssl.SSLContext | None:
    """With `ca_file`, a context that trusts only its CAs (a private model server); else None,
    urllib's default: the image's public CAs."""
    if ca_file is None:
        return None
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except OSError as exc:  # ssl.SSLError too: a file that holds no certificate
        raise StagingError(f"cannot load CA certificates from {ca_file}: {exc}") from exc


def _download_https(uri: str, target: Path, ca_file: Path | None = None) -> None:
    context = _tls_context(ca_file)
    request = urllib.request.Request(uri, headers={"User-Agent": "stratus-storage"})  # noqa: S310
    try:
        with (
            urllib.request.urlopen(request, timeout=60, context=context) as resp,  # noqa: S310
            target.open("wb") as out,
        ):
            shutil.copyfileobj(resp, out, CHUNK)
    except OSError as exc:
        raise StagingError(f"cannot download {uri}: {exc}") from exc


def _copy_pvc(uri: str, target: Path, pvc_root: Path) -> None:
    parsed = urllib.parse.urlparse(uri)
    source = pvc_root / parsed.path.lstrip("/")
    if not source.exists():
        raise StagingError(f"{uri}: {parsed.path or '/'} not found on claim {parsed.netloc}")
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)


def _object_store(uri: str, target: Path) -> None:
    parsed = urllib.parse.urlparse(uri)
    key = parsed.path.lstrip("/")
    try:
        if parsed.scheme == "s3":
            import boto3  # type: ignore[import-not-found] # noqa: PLC0415 - optional client

            boto3.client("s3").download_file(parsed.netloc, key, str(target))
        else:
            from google.cloud import storage  # type: ignore[import-not-found] # noqa: PLC0415

            storage.Client().bucket(parsed.netloc).blob(key).download_to_filename(str(target))
    except ImportError as exc:
        client = "boto3" if parsed.scheme == "s3" else "google-cloud-storage"
        raise StagingError(
            f"{uri}: {parsed.scheme}:// needs {client} in the staging image"
        ) from exc


def fetch(
    uri: str,
    dest: Path,
    sha256: str | None = None,
    pvc_root: Path = PVC_ROOT,
    ca_file: Path | None = None,
) -> Path:
    """Stage `uri` into `dest` (a directory); return the staged path. Nothing is left at the
    final path unless the whole model arrived and, when `sha256` is given, matched it. With
    `ca_file`, an https:// server must present a certificate from one of its CAs."""
    parsed = urllib.parse.urlparse(uri)
    name = Path(parsed.path).name or "model"
    fetchers: dict[str, Callable[[], None]] = {
        "https": lambda: _download_https(uri, staging, ca_file),
        "pvc": lambda: _copy_pvc(uri, staging, pvc_root),
        "s3": lambda: _object_store(uri, staging),
        "gs": lambda: _object_store(uri, staging),
    }
    if parsed.scheme not in fetchers:
        raise StagingError(
            f"{uri}: unsupported scheme {parsed.scheme!r} (use https://, pvc://, s3:// or gs://)"
        )
    dest.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".staging-", dir=dest))
    staging = work / name
    try:
        fetchers[parsed.scheme]()
        if sha256 is not None:
            if staging.is_dir():
                raise StagingError(f"{uri}: sha256 applies to a single file, not a directory")
            actual = _sha256_of(staging)
            if actual != sha256.lower():
                raise StagingError(
                    f"{uri}: sha256 mismatch: expected {sha256.lower()}, got {actual}"
                )
        final = dest / name
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        os.replace(staging, final)
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)
