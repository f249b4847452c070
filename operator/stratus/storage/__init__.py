"""Model staging: fetch a model from its URI into a local directory, verify it, and fail with a
message that says what went wrong. The InferenceService's init container runs it as
`python -m stratus.storage fetch --uri URI --dest DIR [--max-size SIZE] [--sha256 HEX]
[--ca-file PEM] [--endpoint URL]`.

Staging never lies: a body shorter than its Content-Length, a cut chunked body, a redirect away
from https, a model past the size limit, a pvc:// path that leaves its claim, or an object or a
directory's file that differs from its manifest (see `s3`) all fail, and nothing is left at the
final path unless the whole model arrived. URIs in messages are
redacted (see `redact`)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import shutil
import ssl
import stat
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from stratus.storage import s3
from stratus.storage.errors import StagingError as StagingError
from stratus.storage.redact import redact_uri

CHUNK = 1 << 20
# Where the init container mounts the claim of a pvc:// model.
PVC_ROOT = Path("/mnt/model-source")
# The prefix of a download in progress; one left behind was killed, and is removed at start.
STAGING_PREFIX = ".staging-"
TIMEOUT_S = 60
_SIZE = re.compile(r"([0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")
_UNITS: dict[str, int] = {
    "": 1,
    **{unit: 1000 ** (i + 1) for i, unit in enumerate("kMGTPE")},
    **{f"{unit}i": 1024 ** (i + 1) for i, unit in enumerate("KMGTPE")},
}


def size_bytes(text: str) -> int:
    """A whole number of bytes written as a Kubernetes quantity: 52428800, 50Mi, 100Gi, 1T."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size such as 500Mi or 100Gi")
    return int(match.group(1)) * _UNITS[match.group(2) or ""]


def _sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            sha.update(block)
    return sha.hexdigest()


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A new context for each download: with `ca_file`, one that trusts only its CAs (a private
    model server); else the image's public CAs, read now (so SSL_CERT_FILE counts as it is now;
    urllib's own default opener keeps the first context it made for the whole process)."""
    try:
        return ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    except OSError as exc:  # ssl.SSLError too: a file that holds no certificate
        raise StagingError(f"cannot load CA certificates from {ca_file}: {exc}") from exc


class _HttpsOnly(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to another https:// URL: a downgrade would hand the model (and
    any presigned token in the new URL) to whoever sits on the path."""

    def __init__(self, shown: str) -> None:
        self.shown = shown

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme != "https":
            fp.close()
            raise StagingError(
                f"{self.shown}: refused a redirect ({code}) to {redact_uri(newurl)}: "
                "only https:// is followed"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _request(uri: str) -> urllib.request.Request:
    """A GET of `uri`; credentials in its userinfo become a Basic Authorization header that is
    not carried over a redirect (to another host, it would leak them)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username is None and parts.password is None:
        bare = uri
    else:
        bare = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    request = urllib.request.Request(bare, headers={"User-Agent": "stratus-storage"})  # noqa: S310
    if bare != uri:
        user = urllib.parse.unquote(parts.username or "")
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_unredirected_header("Authorization", f"Basic {token}")
    return request


def _content_length(resp: http.client.HTTPResponse) -> int | None:
    value = resp.headers.get("Content-Length")
    return int(value) if value is not None and value.strip().isdigit() else None


def _download_https(
    uri: str, shown: str, target: Path, ca_file: Path | None, max_bytes: int | None
) -> None:
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=_tls_context(ca_file)), _HttpsOnly(shown)
    )
    try:
        with opener.open(_request(uri), timeout=TIMEOUT_S) as resp, target.open("wb") as out:
            expected = _content_length(resp)
            if max_bytes is not None and expected is not None and expected > max_bytes:
                raise StagingError(
                    f"{shown}: {expected} bytes (Content-Length), over the size limit of "
                    f"{max_bytes} bytes"
                )
            received = 0
            while block := resp.read(CHUNK):
                received += len(block)
                if max_bytes is not None and received > max_bytes:
                    raise StagingError(f"{shown}: aborted past the size limit of {max_bytes} bytes")
                out.write(block)
            # http.client ends a body quietly when the connection closes early: count it.
            if expected is not None and received != expected:
                raise StagingError(
                    f"cannot download {shown}: the body ended after {received} of {expected} "
                    "bytes (Content-Length)"
                )
    except (OSError, http.client.HTTPException) as exc:  # a cut chunked body: IncompleteRead
        detail = str(exc) or type(exc).__name__
        raise StagingError(f"cannot download {shown}: {detail}") from exc


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _claim_tree(
    source: Path, root: Path, shown: str, top: PurePosixPath
) -> Iterator[tuple[PurePosixPath, Path]]:
    """Every directory and regular file at and under `source` (the claim's `top`), as (path
    relative to `source`, real path), each checked to be inside the claim `root`: a symlink
    that leaves it (or loops, or dangles) and anything but a file or directory is refused."""

    def walk(
        relative: PurePosixPath, path: Path, parents: frozenset[Path]
    ) -> Iterator[tuple[PurePosixPath, Path]]:
        where = f"{shown}: {top / relative}"
        real = Path(os.path.realpath(path))
        if not _inside(real, root):
            raise StagingError(f"{where} leads outside the claim (a symlink)")
        if not real.exists():
            raise StagingError(f"{where} is a dangling symlink")
        if real.is_dir():
            if real in parents:
                raise StagingError(f"{where} is a symlink loop")
            yield relative, real
            for child in sorted(real.iterdir()):
                yield from walk(relative / child.name, child, parents | {real})
        elif real.is_file():
            yield relative, real
        else:
            raise StagingError(f"{where} is not a regular file")

    yield from walk(PurePosixPath(), source, frozenset())


def _copy_file(real: Path, target: Path, root: Path, shown: str) -> None:
    """Copy one checked file, checking again what was opened: the claim may change between
    the walk and the copy."""
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as source:
        opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if not _inside(opened, root) or not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StagingError(f"{shown}: {real.relative_to(root)} changed while staging")
        with target.open("wb") as out:
            shutil.copyfileobj(source, out, CHUNK)


def _copy_pvc(uri: str, shown: str, target: Path, pvc_root: Path, max_bytes: int | None) -> None:
    """Copy `pvc://claim/path` from the claim mounted at `pvc_root`, never from outside it."""
    parsed = urllib.parse.urlsplit(uri)
    relative = PurePosixPath(parsed.path.lstrip("/"))
    if ".." in relative.parts:
        raise StagingError(f"{shown}: '..' is not allowed in a pvc:// path")
    root = Path(os.path.realpath(pvc_root))
    source = root / relative
    if not os.path.lexists(source):
        raise StagingError(f"{shown}: {parsed.path or '/'} not found on claim {parsed.netloc}")
    tree = list(_claim_tree(source, root, shown, PurePosixPath("/") / relative))
    total = sum(real.stat().st_size for _, real in tree if real.is_file())
    if max_bytes is not None and total > max_bytes:
        raise StagingError(f"{shown}: {total} bytes, over the size limit of {max_bytes} bytes")
    for relative_path, real in tree:
        destination = target / relative_path
        if real.is_dir():
            destination.mkdir()
        else:
            _copy_file(real, destination, root, shown)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def staged_name(uri: str) -> str:
    """The name `fetch` gives what it stages in its destination: the last part of the path."""
    return Path(urllib.parse.urlsplit(uri).path).name or "model"


def fetch(
    uri: str,
    dest: Path,
    sha256: str | None = None,
    pvc_root: Path = PVC_ROOT,
    ca_file: Path | None = None,
    max_bytes: int | None = None,
    endpoint: str | None = None,
) -> Path:
    """Stage `uri` into `dest` (a directory); return the staged path. Nothing is left at the
    final path unless the whole model arrived, within `max_bytes`, and, when `sha256` is
    given, matched it (for an s3:// or gs:// directory, its manifest did). With `ca_file`, an
    https:// server must present a certificate from one of its CAs; `endpoint` is the S3
    store's (see `s3`). Every failure is a StagingError whose message holds the URI redacted."""
    shown = redact_uri(uri)
    parsed = urllib.parse.urlsplit(uri)
    name = staged_name(uri)
    fetchers: dict[str, Callable[[], None]] = {
        "https": lambda: _download_https(uri, shown, staging, ca_file, max_bytes),
        "pvc": lambda: _copy_pvc(uri, shown, staging, pvc_root, max_bytes),
        "s3": lambda: s3.fetch(uri, shown, staging, sha256, max_bytes, endpoint),
        "gs": lambda: s3.fetch(uri, shown, staging, sha256, max_bytes, endpoint),
    }
    if parsed.scheme not in fetchers:
        raise StagingError(
            f"{shown}: unsupported scheme {parsed.scheme!r} (use https://, pvc://, s3:// or gs://)"
        )
    final = dest / name
    try:
        dest.mkdir(parents=True, exist_ok=True)
        # A killed download's leftovers, and the copy a previous run staged (this run stages
        # it anew): the volume never holds two copies of the model.
        for stale in [*dest.glob(f"{STAGING_PREFIX}*"), final]:
            _remove(stale)
        work = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dest))
    except OSError as exc:
        raise StagingError(f"{shown}: cannot prepare {dest}: {exc}") from exc
    staging = work / name
    try:
        fetchers[parsed.scheme]()
        if sha256 is not None and parsed.scheme not in ("s3", "gs"):  # s3.fetch checked it
            if staging.is_dir():
                raise StagingError(f"{shown}: sha256 applies to a single file, not a directory")
            actual = _sha256_of(staging)
            if actual != sha256.lower():
                raise StagingError(
                    f"{shown}: sha256 mismatch: expected {sha256.lower()}, got {actual}"
                )
        os.replace(staging, final)
        return final
    except OSError as exc:  # a full volume, a permission refused, a file that vanished
        raise StagingError(f"{shown}: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
