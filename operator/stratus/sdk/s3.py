"""A small S3 client on the standard library: what the checkpoint SDK needs (objects, listings,
multipart uploads, ranged downloads), signed with AWS Signature Version 4.

Why not boto3: the SDK must import into any training image with nothing to install, and
botocore's pins would constrain that image (python-dateutil<3, for one, which the newest
kubernetes client, 37.0.2, no longer accepts).

Memory stays bounded: a multipart upload holds at most `concurrency` parts of `part_size` bytes,
a download streams `_CHUNK` bytes at a time per request. Every payload is signed with its
sha256, so the store rejects a part that arrives changed.

Configuration is the AWS CLI's environment: AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3) for an
S3-compatible store, addressed path-style; AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
AWS_SESSION_TOKEN; AWS_REGION (or AWS_DEFAULT_REGION, else us-east-1); AWS_CA_BUNDLE.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import http.client
import os
import random
import ssl
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

MIN_PART = 5 << 20  # S3's smallest part but the last
MAX_PARTS = 10000
_CHUNK = 1 << 20
_ERROR_BYTES = 64 << 10
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})
_RETRIED_CODES = frozenset({"RequestTimeout", "SlowDown", "InternalError", "ServiceUnavailable"})


class S3Error(Exception):
    """A request the store refused, or could not be reached for: one line naming the object."""

    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class S3Object:
    key: str
    size: int
    etag: str = ""


@dataclass(frozen=True)
class MultipartUpload:
    key: str
    upload_id: str


@dataclass(frozen=True)
class Head:
    size: int
    metadata: Mapping[str, str]


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/prefix` as (bucket, prefix without slashes at either end)."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{uri!r} is not an s3://<bucket>/<prefix> URI")
    if parsed.query or parsed.fragment:
        raise ValueError(f"{uri!r}: an s3:// URI takes no query or fragment")
    return parsed.netloc, parsed.path.strip("/")


def _quote(text: str, safe: str = "~") -> str:
    return urllib.parse.quote(text, safe=safe)


def _sign(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _text(element: ET.Element, tag: str, ns: str) -> str:
    return element.findtext(f"{ns}{tag}") or ""


def _namespace(root: ET.Element) -> str:
    return root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""


class S3Client:
    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        part_size: int = 16 << 20,
        concurrency: int = 4,
        timeout: float = 60.0,
        retries: int = 5,
    ) -> None:
        env = os.environ
        self.bucket = bucket
        self.region = (
            region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        )
        self._access = access_key or env.get("AWS_ACCESS_KEY_ID", "")
        self._secret = secret_key or env.get("AWS_SECRET_ACCESS_KEY", "")
        self._token = session_token or env.get("AWS_SESSION_TOKEN", "")
        if not self._access or not self._secret:
            raise S3Error(
                "no credentials for s3: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(a TrainingJob's checkpoint.credentialsSecret does)"
            )
        endpoint = endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        if endpoint:
            url = urllib.parse.urlsplit(endpoint)
            if url.scheme not in ("http", "https") or not url.netloc:
                raise S3Error(f"endpoint {endpoint!r} is not http(s)://host[:port]")
            self._scheme, self._host, self._root = url.scheme, url.netloc, f"/{bucket}"
        elif "." in bucket:  # a dotted name breaks the TLS name of a virtual host
            self._scheme, self._host = "https", f"s3.{self.region}.amazonaws.com"
            self._root = f"/{bucket}"
        else:
            self._scheme, self._host, self._root = (
                "https",
                f"{bucket}.s3.{self.region}.amazonaws.com",
                "",
            )
        self.part_size = max(MIN_PART, part_size)
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.retries = max(1, retries)
        self._local = threading.local()
        self._tls: ssl.SSLContext | None = None
        if self._scheme == "https":
            self._tls = ssl.create_default_context(cafile=env.get("AWS_CA_BUNDLE") or None)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # Requests

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._tls is not None:
                conn = http.client.HTTPSConnection(
                    self._host, timeout=self.timeout, context=self._tls
                )
            else:
                conn = http.client.HTTPConnection(self._host, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _path(self, key: str | None) -> str:
        """The request path of an object (the bucket's with None), as sent and as signed."""
        return self._root + "/" + _quote(key, safe="/~") if key is not None else self._root or "/"

    def _headers(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        payload_sha256: str,
        now: dt.datetime | None = None,
    ) -> tuple[str, dict[str, str]]:
        """The URL and the signed headers of a request (AWS Signature Version 4)."""
        now = now or dt.datetime.now(dt.UTC)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        signed = {k.lower(): v.strip() for k, v in headers.items()}
        signed |= {"host": self._host, "x-amz-date": stamp, "x-amz-content-sha256": payload_sha256}
        if self._token:
            signed["x-amz-security-token"] = self._token
        names = sorted(signed)
        canonical_query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items()))
        request = "\n".join(
            [
                method,
                path,
                canonical_query,
                "".join(f"{n}:{signed[n]}\n" for n in names),
                ";".join(names),
                payload_sha256,
            ]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(request.encode()).hexdigest()]
        )
        key = _sign(
            _sign(_sign(_sign(f"AWS4{self._secret}".encode(), day), self.region), "s3"),
            "aws4_request",
        )
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        signed["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self._access}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        url = path + (f"?{canonical_query}" if canonical_query else "")
        return url, signed

    def _request(
        self,
        method: str,
        key: str | None,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        expect: tuple[int, ...] = (200,),
        sink: Callable[[http.client.HTTPResponse], None] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request, retried on connection errors and on the store's transient answers.
        With `sink`, a successful response's body goes to it instead of being returned."""
        path = self._path(key)
        payload = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
        what = self.uri(key) if key is not None else f"s3://{self.bucket}"
        for attempt in range(self.retries):
            url, signed = self._headers(method, path, query or {}, headers or {}, payload)
            try:
                conn = self._connection()
                conn.request(method, url, body=body or None, headers=signed)
                response = conn.getresponse()
                status = response.status
                got = {k.lower(): v for k, v in response.getheaders()}
                if status in expect and sink is not None:
                    sink(response)
                    data = b""
                elif status in expect or method == "HEAD":
                    data = response.read()
                else:  # an error: its first bytes say why; the rest is not read
                    data = response.read(_ERROR_BYTES)
                    self._drop_connection()
                if got.get("connection", "").lower() == "close":
                    self._drop_connection()
            except (OSError, http.client.HTTPException) as error:
                self._drop_connection()
                if attempt + 1 == self.retries:
                    raise S3Error(f"{what}: {method} failed: {error}") from error
                self._backoff(attempt)
                continue
            except BaseException:
                self._drop_connection()  # a sink's refusal leaves the body unread
                raise
            code, message = self._error(data) if status not in expect else ("", "")
            # CompleteMultipartUpload may answer 200 with an error in the body.
            if status in expect and data.lstrip().startswith(b"<Error>"):
                code, message = self._error(data)
                status = 500
            if status in expect:
                return status, got, data
            if (status in _RETRIED_STATUS or code in _RETRIED_CODES) and attempt + 1 < self.retries:
                self._backoff(attempt)
                continue
            detail = f"{code}: {message}" if code else f"HTTP {status}"
            raise S3Error(f"{what}: {method} {detail}".strip(), status=status, code=code)
        raise AssertionError("unreachable")  # the loop returns or raises

    @staticmethod
    def _backoff(attempt: int) -> None:
        time.sleep(min(5.0, 0.2 * 2**attempt) * (0.5 + random.random()))  # noqa: S311

    @staticmethod
    def _error(data: bytes) -> tuple[str, str]:
        try:
            root = ET.fromstring(data)  # noqa: S314 - the configured store's own answer
        except ET.ParseError:
            return "", data[:200].decode(errors="replace").strip()
        ns = _namespace(root)
        return _text(root, "Code", ns), _text(root, "Message", ns)

    # Objects

    def put_object(self, key: str, body: bytes, metadata: Mapping[str, str] | None = None) -> None:
        headers = {f"x-amz-meta-{k}": v for k, v in (metadata or {}).items()}
        self._request("PUT", key, headers=headers, body=body)

    def get_object(self, key: str) -> bytes:
        return self._request("GET", key)[2]

    def head_object(self, key: str) -> Head | None:
        try:
            _, headers, _ = self._request("HEAD", key)
        except S3Error as error:
            if error.status == 404:
                return None
            raise
        metadata = {
            k.removeprefix("x-amz-meta-"): v
            for k, v in headers.items()
            if k.startswith("x-amz-meta-")
        }
        return Head(int(headers.get("content-length", "0")), metadata)

    def delete_object(self, key: str) -> None:
        self._request("DELETE", key, expect=(200, 204))

    def list_objects(self, prefix: str, delimiter: str = "") -> tuple[list[S3Object], list[str]]:
        """Every object under `prefix` (and, with a delimiter, the common prefixes)."""
        objects: list[S3Object] = []
        prefixes: list[str] = []
        query = {"list-type": "2", "prefix": prefix}
        if delimiter:
            query["delimiter"] = delimiter
        while True:
            root = ET.fromstring(self._request("GET", None, query=query)[2])  # noqa: S314
            ns = _namespace(root)
            for item in root.iter(f"{ns}Contents"):
                objects.append(
                    S3Object(
                        _text(item, "Key", ns),
                        int(_text(item, "Size", ns) or 0),
                        _text(item, "ETag", ns).strip('"'),
                    )
                )
            for item in root.iter(f"{ns}CommonPrefixes"):
                prefixes.append(_text(item, "Prefix", ns))
            token = _text(root, "NextContinuationToken", ns)
            if _text(root, "IsTruncated", ns) != "true" or not token:
                return objects, prefixes
            query["continuation-token"] = token

    # Multipart uploads

    def list_multipart_uploads(self, prefix: str) -> list[MultipartUpload]:
        uploads: list[MultipartUpload] = []
        query = {"uploads": "", "prefix": prefix}
        while True:
            root = ET.fromstring(self._request("GET", None, query=query)[2])  # noqa: S314
            ns = _namespace(root)
            for item in root.iter(f"{ns}Upload"):
                uploads.append(MultipartUpload(_text(item, "Key", ns), _text(item, "UploadId", ns)))
            if _text(root, "IsTruncated", ns) != "true":
                return uploads
            key_marker = _text(root, "NextKeyMarker", ns)
            if not key_marker:
                return uploads
            query["key-marker"] = key_marker
            query["upload-id-marker"] = _text(root, "NextUploadIdMarker", ns)

    def abort_multipart_upload(self, upload: MultipartUpload) -> None:
        try:
            self._request(
                "DELETE", upload.key, query={"uploadId": upload.upload_id}, expect=(204, 200)
            )
        except S3Error as error:
            if error.status != 404:  # already completed or aborted
                raise

    def upload_file(self, path: Path, key: str, metadata: Mapping[str, str] | None = None) -> None:
        """Upload one file: a single PUT up to `part_size`, else a multipart upload of at most
        `concurrency` parts in flight, aborted if any part fails."""
        size = path.stat().st_size
        part = max(self.part_size, -(-size // MAX_PARTS))
        if size <= part:
            self.put_object(key, path.read_bytes(), metadata)
            return
        headers = {f"x-amz-meta-{k}": v for k, v in (metadata or {}).items()}
        root = ET.fromstring(  # noqa: S314
            self._request("POST", key, query={"uploads": ""}, headers=headers)[2]
        )
        upload = MultipartUpload(key, _text(root, "UploadId", _namespace(root)))
        if not upload.upload_id:
            raise S3Error(f"{self.uri(key)}: the store started no multipart upload")
        fd = os.open(path, os.O_RDONLY)
        try:

            def send(number: int) -> str:
                data = os.pread(fd, part, (number - 1) * part)
                query = {"partNumber": str(number), "uploadId": upload.upload_id}
                _, headers, _ = self._request("PUT", key, query=query, body=data)
                return headers.get("etag", "")

            count = -(-size // part)
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="stratus-s3") as pool:
                etags = list(pool.map(send, range(1, count + 1)))
            parts = "".join(
                f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(e)}</ETag></Part>"
                for n, e in enumerate(etags, start=1)
            )
            body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
            try:
                self._request("POST", key, query={"uploadId": upload.upload_id}, body=body)
            except S3Error as error:
                # A retry of a completion whose answer was lost finds the upload gone.
                head = self.head_object(key) if error.code == "NoSuchUpload" else None
                if head is None or head.size != size:
                    raise
        except BaseException:
            with contextlib.suppress(S3Error):
                self.abort_multipart_upload(upload)
            raise
        finally:
            os.close(fd)

    def download_file(
        self, key: str, path: Path, size: int, update: Callable[[bytes], object] | None = None
    ) -> None:
        """Download `size` bytes of `key` into `path`: ranges of `part_size`, `concurrency` at a
        time, each written at its offset as it streams in. `update` (a hash's, say) is given
        the bytes in order, each range as soon as it and those before it are in, while later
        ones are still downloading."""
        with path.open("w+b") as handle:
            handle.truncate(size)
            if size == 0:
                return
            fd = handle.fileno()

            def fetch(start: int) -> None:
                end = min(size, start + self.part_size) - 1

                def sink(response: http.client.HTTPResponse) -> None:
                    total = (response.getheader("content-range") or "").rpartition("/")[2]
                    if total.isdigit() and int(total) != size:
                        raise S3Error(f"{self.uri(key)}: {total} bytes, {size} expected")
                    offset = start
                    for block in iter(lambda: response.read(_CHUNK), b""):
                        os.pwrite(fd, block, offset)
                        offset += len(block)
                    if offset != end + 1:
                        raise http.client.IncompleteRead(b"", end + 1 - offset)

                self._request(
                    "GET", key, headers={"range": f"bytes={start}-{end}"}, expect=(206,), sink=sink
                )

            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="stratus-s3") as pool:
                ranges = [(at, pool.submit(fetch, at)) for at in range(0, size, self.part_size)]
                try:
                    for at, done in ranges:
                        done.result()
                        for offset in range(at, min(size, at + self.part_size), _CHUNK):
                            if update is not None:
                                update(os.pread(fd, min(_CHUNK, size - offset), offset))
                except BaseException:
                    for _, pending in ranges:
                        pending.cancel()
                    raise
