"""Checkpoints in object storage, against a real S3 server (SeaweedFS, `weed` built by
`make binaries`): uploads in the background with the manifest last, resume from the newest
checkpoint that downloads whole (older ones when it does not), the final save on SIGTERM within
the grace period, retention in the bucket, and attempts that never both own the newest step.
The rules themselves (manifests, which checkpoint is the newest, what retention deletes) are
tested without a server first."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from bench.checkpoint import checkpoint_storage
from hypothesis import given
from hypothesis import strategies as st

from stratus.devcluster import objectstore
from stratus.sdk import PREEMPTED_EXIT_CODE, CheckpointManager
from stratus.sdk.remote import (
    FileEntry,
    Id,
    RemoteError,
    RemoteStore,
    build_manifest,
    parse_manifest,
    retention,
    visible,
)
from stratus.sdk.s3 import S3Client
from tests.objectstore import running
from tests.unit.checkpoint_worker import payload

WORKER = Path(__file__).with_name("remote_worker.py")
ROOT = Path(__file__).resolve().parents[2]

# The rules, without a server.


def entries(**sizes: int) -> dict[str, FileEntry]:
    return {name.replace("_", "/"): FileEntry(size, "0" * 64) for name, size in sizes.items()}


def test_a_manifest_names_its_step_attempt_and_every_file() -> None:
    files = entries(state=10, shard_a=0)
    body = build_manifest((12, 3), files)
    assert parse_manifest(body, (12, 3)) == files
    with pytest.raises(ValueError, match="another step or attempt"):
        parse_manifest(body, (12, 4))


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "not stratus-checkpoint/1"),
        ({"files": {}}, "lists no files"),
        ({"files": {"../escape": {"size": 1, "sha256": "x"}}}, "invalid entry '../escape'"),
        ({"files": {"/abs": {"size": 1, "sha256": "x"}}}, "invalid entry '/abs'"),
        ({"files": {"a//b": {"size": 1, "sha256": "x"}}}, "invalid entry 'a//b'"),
        ({"files": {"a/./b": {"size": 1, "sha256": "x"}}}, "invalid entry"),
        ({"files": {"a": {"size": -1, "sha256": "x"}}}, "invalid entry 'a'"),
        ({"files": {"a": {"size": 1}}}, "invalid entry 'a'"),
        ({"files": {"a": 7}}, "invalid entry 'a'"),
    ],
)
def test_a_manifest_that_could_mislead_a_download_is_refused(
    document: bytes | dict[str, Any], reason: str
) -> None:
    if isinstance(document, dict):
        document = json.dumps(
            {"format": "stratus-checkpoint/1", "step": 1, "attempt": 0, **document}
        ).encode()
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
        parse_manifest(document, (1, 0))


def test_the_newest_is_the_highest_step_then_attempt_of_attempts_up_to_the_readers() -> None:
    found = [(10, 1), (30, 1), (30, 2), (20, 3), (50, 4)]
    assert visible(found, 3) == [(30, 2), (30, 1), (20, 3), (10, 1)]
    assert visible(found, 0) == []


def complete(*checkpoints: Id) -> tuple[dict[Id, Any], dict[Id, dict[str, int]]]:
    manifests: dict[Id, Any] = {c: entries(state=5) for c in checkpoints}
    data = {c: {"state": 5} for c in checkpoints}
    return manifests, data


def test_retention_keeps_the_newest_complete_and_what_it_cannot_judge() -> None:
    manifests, data = complete((10, 1), (20, 1), (30, 2), (40, 2))
    manifests[(50, 2)] = entries(state=5)  # its file is missing
    manifests[(45, 2)] = entries(state=5)
    data[(45, 2)] = {"state": 4}  # cut short
    manifests[(60, 2)] = None  # does not parse
    data[(15, 1)] = {"state": 5}  # an older attempt's upload without its manifest
    data[(42, 2)] = {"state": 5}  # this attempt's: perhaps in progress
    data[(70, 3)] = {"state": 5}  # a newer attempt's
    doomed, orphans = retention(manifests, data, attempt=2, keep=2)
    assert doomed == [(20, 1), (10, 1)]
    assert orphans == [(15, 1)]


@given(
    checkpoints=st.sets(st.tuples(st.integers(0, 20), st.integers(0, 3)), max_size=12),
    broken=st.sets(st.tuples(st.integers(0, 20), st.integers(0, 3)), max_size=4),
    attempt=st.integers(0, 3),
    keep=st.integers(0, 4),
)
def test_retention_never_deletes_the_newest_complete_and_keeps_keep(
    checkpoints: set[Id], broken: set[Id], attempt: int, keep: int
) -> None:
    manifests, data = complete(*checkpoints)
    for c in broken:
        manifests[c] = entries(state=5)
        data.pop(c, None)
    good = visible(sorted(checkpoints - broken), attempt)
    doomed, orphans = retention(manifests, data, attempt, keep)
    assert orphans == []
    assert set(doomed) <= set(good)
    if good:
        assert good[0] not in doomed
    assert len(good) - len(doomed) == min(max(1, keep), len(good))


# AWS's published examples of Signature Version 4 for S3 (its documentation's "Examples of
# signature calculations"): the client signs as AWS S3 itself does, not only as SeaweedFS accepts.
AWS_EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    ("method", "key", "query", "headers", "body", "signature"),
    [
        (
            "GET",
            "test.txt",
            {},
            {"Range": "bytes=0-9"},
            b"",
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        ),
        (
            "PUT",
            "test$file.text",
            {},
            {"Date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"},
            b"Welcome to Amazon S3.",
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        ),
        (
            "GET",
            None,
            {"lifecycle": ""},
            {},
            b"",
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
        ),
        (
            "GET",
            None,
            {"prefix": "J", "max-keys": "2"},
            {},
            b"",
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        ),
    ],
    ids=["get-object", "put-object", "get-lifecycle", "list-objects"],
)
def test_requests_are_signed_as_aws_documents(
    method: str,
    key: str | None,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes,
    signature: str,
) -> None:
    client = S3Client(
        "examplebucket",
        region="us-east-1",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key=AWS_EXAMPLE_SECRET,
    )
    client._host = "examplebucket.s3.amazonaws.com"  # the examples' (global) endpoint
    path = client._path(key)
    at = dt.datetime(2013, 5, 24, tzinfo=dt.UTC)
    _, signed = client._headers(method, path, query, headers, hashlib.sha256(body).hexdigest(), at)
    assert signed["authorization"].endswith(f"Signature={signature}")
    assert signed["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
    )


def test_a_dotted_bucket_is_addressed_path_style() -> None:
    client = S3Client("my.bucket", region="eu-west-1", access_key="k", secret_key="s")
    assert client._path("a b/c") == "/my.bucket/a%20b/c"
    assert client._path(None) == "/my.bucket"


# Against the real server.


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[objectstore.Credentials]:
    with running(tmp_path_factory.mktemp("objectstore")) as creds:
        yield creds


class Proxy:
    """A TCP relay in front of the store: `rate` bytes/s per connection and direction (0: as
    fast as it goes); `freeze()` stops relaying until `thaw()`."""

    def __init__(self, upstream: str, rate: int = 0) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.rate = rate
        self._moving = threading.Event()
        self._moving.set()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self._moving.clear()

    def thaw(self) -> None:
        self._moving.set()

    def close(self) -> None:
        self.thaw()
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        chunk = 16384
        try:
            while data := source.recv(chunk):
                self._moving.wait()
                target.sendall(data)
                if self.rate:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for end in (source, target):
                end.close()


@pytest.fixture
def proxy(store: objectstore.Credentials) -> Iterator[Callable[[int], Proxy]]:
    made: list[Proxy] = []

    def make(rate: int = 0) -> Proxy:
        made.append(Proxy(store.endpoint, rate))
        return made[-1]

    yield make
    for p in made:
        p.close()


class Bucket:
    """One test's prefix in the store's bucket, and what the processes of the test need."""

    def __init__(self, creds: objectstore.Credentials, prefix: str, tmp: Path) -> None:
        self.creds = creds
        self.prefix = prefix
        self.uri = f"s3://{creds.bucket}/{prefix}"
        self.tmp = tmp
        self.client = self.client_via(creds.endpoint)

    def client_via(self, endpoint: str) -> S3Client:
        return S3Client(
            self.creds.bucket,
            endpoint=endpoint,
            region=objectstore.REGION,
            access_key=self.creds.access_key_id,
            secret_key=self.creds.secret_access_key,
            part_size=5 << 20,
        )

    def env(self, endpoint: str | None = None, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            **self.creds.env(),
            **({"AWS_ENDPOINT_URL": endpoint} if endpoint else {}),
            "STRATUS_CHECKPOINT_URI": self.uri,
            "STRATUS_S3_PART_SIZE": str(5 << 20),
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'operator'}",
            **extra,
        }

    def store(self, attempt: int = 10**6, keep: int = 2) -> RemoteStore:
        """The bucket as an attempt sees it (by default, one newer than any in the test)."""
        return RemoteStore(self.client, self.prefix, attempt, keep, log=lambda _: None)

    def manifests(self) -> list[Id]:
        return self.store().listing()

    def manager(self, name: str, attempt: int, **kwargs: Any) -> CheckpointManager:
        kwargs.setdefault("rank", 0)
        kwargs.setdefault("world_size", 1)
        return CheckpointManager(
            self.tmp / name,
            termination_log=self.tmp / f"{name}.log",
            attempt=attempt,
            uri=self.uri,
            client=self.client,
            **kwargs,
        )

    def launch(
        self, name: str, attempt: int, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                *("--dir", str(self.tmp / name), "--attempt", str(attempt)),
                *("--journal", str(self.tmp / f"{name}.journal"), *args),
            ],
            env=env or self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def journal(self, name: str, word: str) -> list[int]:
        path = self.tmp / f"{name}.journal"
        lines = path.read_text().splitlines() if path.exists() else []
        return [int(line.split()[1]) for line in lines if line.startswith(f"{word} ")]

    def report(self, name: str) -> dict[str, Any]:
        message = (self.tmp / f"{name}.log").read_text()
        report: dict[str, Any] = json.loads(message)
        return report

    def wait_for(self, what: Callable[[], object], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)


@pytest.fixture
def bucket(
    store: objectstore.Credentials, tmp_path: Path, request: pytest.FixtureRequest
) -> Bucket:
    prefix = f"{re.sub(r'[^A-Za-z0-9_-]+', '-', request.node.name)[:80]}/{os.getpid()}"
    return Bucket(store, prefix, tmp_path)


def state(step: int, size: int) -> Callable[[Path], object]:
    return lambda d: (d / "state.bin").write_bytes(payload(step, 0, size))


def finish(proc: subprocess.Popen[str], timeout: float = 60.0) -> tuple[int, str]:
    code = proc.wait(timeout=timeout)
    stderr = proc.stderr.read() if proc.stderr else ""
    return code, stderr


def test_saves_are_uploaded_with_the_manifest_last_and_resumed_elsewhere(bucket: Bucket) -> None:
    first = bucket.manager("first", attempt=1)
    saved = first.save(10, lambda d: (d / "state.bin").write_bytes(payload(10, 0, 12 << 20)))
    assert saved is not None
    uploaded = first.flush(timeout=60)
    assert uploaded is not None
    assert (uploaded.step, uploaded.attempt) == (10, 1)
    assert uploaded.uri == f"{bucket.uri}/step-000000000010-a000001/"
    objects = {
        o.key.removeprefix(bucket.prefix + "/"): o.size
        for o in bucket.client.list_objects(bucket.prefix + "/")[0]
    }
    assert objects == {
        "attempts/0000000001": 0,
        "step-000000000010-a000001/state.bin": 12 << 20,
        "step-000000000010-a000001/MANIFEST.json": (saved.path / "MANIFEST.json").stat().st_size,
        "manifests/step-000000000010-a000001.json": objects[
            "manifests/step-000000000010-a000001.json"
        ],
    }
    manifest = bucket.client.get_object(f"{bucket.prefix}/manifests/step-000000000010-a000001.json")
    assert hashlib.sha256(manifest).hexdigest() == uploaded.sha256
    assert json.loads((bucket.tmp / "first.log").read_text()) == uploaded.fields()

    # Another node: an empty local directory, the next attempt.
    second = bucket.manager("second", attempt=2)
    point = second.resume_point()
    assert point is not None
    assert point.step == 10
    assert point.path == bucket.tmp / "second" / "step-000000000010"
    assert (point.path / "state.bin").read_bytes() == payload(10, 0, 12 << 20)
    assert bucket.report("second") == {
        **uploaded.fields(),
        "resumed_from": {"path": uploaded.uri, "step": 10},
    }
    # The step it resumed from is in the bucket: saving it again uploads nothing.
    second.save(10, lambda d: pytest.fail("a saved step is not written again"))
    assert second.flush(timeout=10) is None
    assert bucket.manifests() == [(10, 1)]


def test_a_sharded_checkpoint_is_uploaded_by_the_rank_that_commits_it(bucket: Bucket) -> None:
    ranks = [bucket.manager("old", attempt=1, sharded=True, rank=r, world_size=2) for r in (0, 1)]
    assert ranks[0].save(5, lambda d: (d / "s").write_text("rank 0")) is None
    assert ranks[1].save(5, lambda d: (d / "s").write_text("rank 1")) is not None
    assert ranks[0].flush(timeout=10) is None  # it uploaded nothing
    uploaded = ranks[1].flush(timeout=30)
    assert uploaded is not None
    assert uploaded.step == 5
    for rank in (0, 1):  # each on a node of its own
        ckpts = bucket.manager(f"new-{rank}", attempt=2, sharded=True, rank=rank, world_size=2)
        point = ckpts.resume_point()
        assert point is not None
        assert point.shards == 2
        assert (ckpts.shard_path(point) / "s").read_text() == f"rank {rank}"


def test_retention_keeps_the_last_n_in_the_bucket(bucket: Bucket) -> None:
    ckpts = bucket.manager("w", attempt=1, keep=5, remote_keep=2)
    for step in range(1, 6):
        ckpts.save(step, lambda d: (d / "s").write_text("x"))
        ckpts.flush(timeout=30)
    kept = {"attempts", "manifests", "step-000000000005-a000001", "step-000000000004-a000001"}

    def tops() -> set[str]:
        return {o.key.split("/")[-2] for o in bucket.client.list_objects(bucket.prefix + "/")[0]}

    bucket.wait_for(lambda: tops() == kept)  # retention runs after each upload, in the background
    assert bucket.manifests() == [(5, 1), (4, 1)]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("bit-flip", "state.bin: sha256 differs from its manifest"),
        ("missing-file", "state.bin: {object}: GET NoSuchKey"),
        ("truncated", "state.bin: {object}: 6291455 bytes, 6291456 expected"),
        ("bad-manifest", "its manifest is not JSON"),
    ],
    ids=["bit-flip", "missing-file", "truncated", "bad-manifest"],
)
def test_a_damaged_newest_checkpoint_is_detected_and_an_older_one_resumed(
    bucket: Bucket, damage: str, reason: str, capfd: pytest.CaptureFixture[str]
) -> None:
    writer = bucket.manager("writer", attempt=1, keep=3)
    for step in (10, 20):
        writer.save(step, state(step, 6 << 20))
        writer.flush(timeout=60)
    key = f"{bucket.prefix}/step-000000000020-a000001/state.bin"
    good = payload(20, 0, 6 << 20)
    if damage == "bit-flip":
        bucket.client.put_object(key, good[:100] + bytes([good[100] ^ 1]) + good[101:])
    elif damage == "missing-file":
        bucket.client.delete_object(key)
    elif damage == "truncated":
        bucket.client.put_object(key, good[:-1])
    else:
        bucket.client.put_object(f"{bucket.prefix}/manifests/step-000000000020-a000001.json", b"{")
    capfd.readouterr()
    reader = bucket.manager("reader", attempt=2)
    point = reader.resume_point()
    assert point is not None
    assert point.step == 10
    assert (point.path / "state.bin").read_bytes() == payload(10, 0, 6 << 20)
    log = capfd.readouterr().err
    damaged = f"{bucket.uri}/step-000000000020-a000001/: "
    reason = reason.format(object=f"{bucket.uri}/step-000000000020-a000001/state.bin")
    assert f"{damaged}{reason}" in log
    assert "; trying an older checkpoint" in log
    assert "resuming from " + bucket.uri + "/step-000000000010-a000001/ (step 10, attempt 1)" in log
    assert bucket.report("reader")["resumed_from"]["step"] == 10
    # Nothing of the damaged step reached the local directory.
    assert sorted(p.name for p in (bucket.tmp / "reader").glob("step-*")) == ["step-000000000010"]


def test_sigkill_mid_upload_then_the_next_attempt_resumes_from_the_previous_complete(
    bucket: Bucket, proxy: Callable[[int], Proxy]
) -> None:
    slow = proxy(8 << 20)  # 8 MiB/s: the 24 MiB step is caught in the middle of its upload
    proc = bucket.launch(
        "a1",
        1,
        *("--saves", "10,20", "--flush", "--big-step", "20", "--big-size", str(24 << 20)),
        env=bucket.env(slow.url, STRATUS_S3_CONCURRENCY="1"),
    )
    step20 = f"{bucket.prefix}/step-000000000020-a000001/"
    bucket.wait_for(lambda: _parts(bucket, step20), timeout=60)
    proc.kill()
    assert finish(proc)[0] == -signal.SIGKILL
    assert bucket.journal("a1", "uploaded") == [10]
    assert bucket.manifests() == [(10, 1)]  # no manifest: step 20 does not exist remotely
    assert bucket.report("a1")["step"] == 10
    assert bucket.report("a1")["pending"]["step"] == 20

    proc = bucket.launch("a2", 2, "--saves", "30", "--flush")
    code, stderr = finish(proc)
    assert code == 0, stderr
    assert bucket.journal("a2", "resumed") == [10]
    assert f"resuming from {bucket.uri}/step-000000000010-a000001/ (step 10, attempt 1)" in stderr
    # The cut upload was aborted, and its parts removed once a newer step was complete.
    assert bucket.client.list_multipart_uploads(bucket.prefix + "/") == []
    assert bucket.client.list_objects(step20)[0] == []
    assert bucket.manifests() == [(30, 2), (10, 1)]


def test_a_container_restarted_in_the_same_attempt_finishes_the_cut_upload(
    bucket: Bucket, proxy: Callable[[int], Proxy]
) -> None:
    """The container is killed mid-upload and restarted by its pod: same attempt, same local
    directory. It resumes from the local step, uploads it whole and aborts the cut upload."""
    slow = proxy(8 << 20)
    args = ("--big-step", "20", "--big-size", str(24 << 20))
    env = bucket.env(slow.url, STRATUS_S3_CONCURRENCY="1")
    proc = bucket.launch("a1", 1, "--saves", "10,20", "--flush", *args, env=env)
    step20 = f"{bucket.prefix}/step-000000000020-a000001/"
    bucket.wait_for(lambda: _parts(bucket, step20), timeout=60)
    proc.kill()
    finish(proc)
    assert bucket.manifests() == [(10, 1)]

    proc = bucket.launch("a1", 1, *args)  # no new saves: it only finishes what was cut
    code, stderr = finish(proc)
    assert code == 0, stderr
    assert bucket.journal("a1", "resumed") == [0, 20]
    assert "the bucket's newest is step 10" in stderr
    assert bucket.manifests() == [(20, 1), (10, 1)]
    assert bucket.client.list_multipart_uploads(bucket.prefix + "/") == []
    assert bucket.report("a1")["step"] == 20
    assert "pending" not in bucket.report("a1")


def _parts(bucket: Bucket, prefix: str) -> bool:
    """Whether a multipart upload under `prefix` has a part stored (it is mid-way)."""
    uploads = bucket.client.list_multipart_uploads(prefix)
    if not uploads:
        return False
    upload = uploads[0]
    _, _, body = bucket.client._request(  # ListParts, which the SDK never needs
        "GET", upload.key, query={"uploadId": upload.upload_id}
    )
    return b"<Part>" in body


def test_sigterm_uploads_the_final_save_within_the_grace_period(bucket: Bucket) -> None:
    env = bucket.env(STRATUS_GRACE_SECONDS="30")
    proc = bucket.launch(
        "a1", 1, "--saves", "10", "--flush", "--then", "wait", "--size", str(8 << 20), env=env
    )
    bucket.wait_for(lambda: bucket.journal("a1", "uploaded") == [10])
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code, stderr = finish(proc)
    assert code == PREEMPTED_EXIT_CODE, stderr
    assert time.monotonic() - started < 25
    report = bucket.report("a1")
    manifest = bucket.client.get_object(f"{bucket.prefix}/manifests/step-000000000011-a000001.json")
    assert report == {
        "path": f"{bucket.uri}/step-000000000011-a000001/",
        "step": 11,
        "sha256": hashlib.sha256(manifest).hexdigest(),
    }
    assert bucket.manifests() == [(11, 1), (10, 1)]


def test_sigterm_says_which_step_is_uploaded_when_the_grace_period_runs_out(
    bucket: Bucket, proxy: Callable[[int], Proxy]
) -> None:
    stuck = proxy(0)
    env = bucket.env(stuck.url, STRATUS_GRACE_SECONDS="3")
    proc = bucket.launch("a1", 1, "--saves", "10", "--flush", "--then", "wait", env=env)
    bucket.wait_for(lambda: bucket.journal("a1", "uploaded") == [10])
    stuck.freeze()  # the store stops answering
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code, stderr = finish(proc)
    took = time.monotonic() - started
    assert code == PREEMPTED_EXIT_CODE, stderr
    assert 1.5 < took < 3, took  # the grace period less its margin, before any SIGKILL
    report = bucket.report("a1")
    assert report["path"] == f"{bucket.uri}/step-000000000010-a000001/"
    assert report["step"] == 10
    assert report["pending"] == {"path": str(bucket.tmp / "a1" / "step-000000000011"), "step": 11}
    assert report["error"] == "the upload of step 11 did not finish within the grace period (3s)"
    assert "step 10 is the newest in the bucket" in stderr
    stuck.thaw()
    assert bucket.manifests() == [(10, 1)]


def test_two_attempts_never_both_own_the_newest_step(bucket: Bucket) -> None:
    """Attempt 1 runs on (a zombie on a lost node) while attempt 2 resumes and runs: once
    attempt 2 has started, only attempt 2 adds checkpoints, and attempt 1 says so."""
    zombie = bucket.launch("a1", 1, "--then", "loop", "--every", "0.1")
    bucket.wait_for(lambda: len(bucket.manifests()) >= 2)
    successor = bucket.launch("a2", 2, "--then", "loop", "--every", "0.1")
    bucket.wait_for(lambda: bucket.journal("a2", "resumed"))
    resumed = bucket.journal("a2", "resumed")[0]
    assert resumed > 0
    bucket.wait_for(lambda: "superseded" in (bucket.tmp / "a1.log").read_text())
    bucket.wait_for(lambda: any(a == 2 for _, a in bucket.manifests()))
    for proc in (zombie, successor):
        proc.send_signal(signal.SIGTERM)
    for proc in (zombie, successor):
        code, stderr = finish(proc)
        assert code == PREEMPTED_EXIT_CODE, stderr

    old, new = bucket.report("a1"), bucket.report("a2")
    assert old["error"].startswith("superseded by attempt 2: step ")
    assert old["step"] <= resumed
    assert new["step"] > resumed
    assert new["path"].endswith("-a000002/")
    assert "error" not in new
    assert all(step <= resumed for step, attempt in bucket.manifests() if attempt == 1)
    assert bucket.manifests()[0] == (new["step"], 2)


def test_killed_at_random_each_attempt_resumes_from_at_least_the_last_upload_reported(
    bucket: Bucket,
) -> None:
    """Each attempt on a new node (an empty directory), killed with SIGKILL or SIGTERM: the next
    resumes from at least the step the last termination message named, never from less."""
    rng = __import__("random").Random(14)
    reported = 0
    for attempt in range(1, 7):
        name = f"a{attempt}"
        proc = bucket.launch(
            name, attempt, "--then", "loop", "--every", "0.05", "--size", str(1 << 20)
        )
        # Killed at a random moment of its save loop, not before it started (a cold store's
        # first answers can take longer than the random wait).
        bucket.wait_for(partial(bucket.journal, name, "saved"))
        time.sleep(rng.uniform(0.5, 1.5))
        sig = (signal.SIGKILL, signal.SIGTERM)[attempt % 2]
        proc.send_signal(sig)
        code, stderr = finish(proc)
        assert code in (-signal.SIGKILL, PREEMPTED_EXIT_CODE, -signal.SIGTERM), stderr
        resumed = bucket.journal(name, "resumed")
        assert resumed or sig == signal.SIGKILL or code == -signal.SIGTERM, stderr
        assert min(resumed, default=reported) >= reported, stderr
        log = bucket.tmp / f"{name}.log"
        # A SIGKILL between the file's truncation and its one write leaves it empty: the
        # kubelet then has no message, and the next attempt finds its checkpoint by listing.
        if log.exists() and (log.read_text() or sig != signal.SIGKILL):
            report = bucket.report(name)
            if report["path"].startswith("s3://"):
                reported = max(reported, report["step"])
    assert reported > 0


def test_an_unreachable_store_stops_the_resume_with_the_reason(tmp_path: Path) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    client = S3Client(
        "ckpt", endpoint=f"http://127.0.0.1:{port}", access_key="k", secret_key="s", retries=1
    )
    ckpts = CheckpointManager(
        tmp_path / "ckpt",
        termination_log=tmp_path / "log",
        rank=0,
        world_size=1,
        attempt=1,
        uri="s3://ckpt/run",
        client=client,
    )
    with pytest.raises(RemoteError, match=r"checkpoint resume failed: s3://ckpt/run/attempts/"):
        ckpts.resume_point()
    assert (tmp_path / "log").read_text().startswith("checkpoint resume failed: s3://ckpt/")


def test_a_uri_of_another_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only s3://"):
        CheckpointManager(tmp_path, uri="gs://bucket/prefix", rank=0, world_size=1)


def test_no_credentials_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(Exception, match="no credentials for s3: set AWS_ACCESS_KEY_ID"):
        CheckpointManager(tmp_path, uri="s3://bucket/prefix", rank=0, world_size=1)


def test_the_checkpoint_benchmark_measures_beside_the_plain_transfers(
    store: objectstore.Credentials, tmp_path: Path
) -> None:
    """`make bench` runs it at 1 GiB; here it only has to keep working. Timings are never
    asserted."""
    result = checkpoint_storage(tmp_path, 6 << 20, 2, store)
    assert result["size_mib"] == 6
    for name in ("local_save", "sdk_upload", "plain_upload", "sdk_resume", "plain_download"):
        assert len(result["seconds"][name]) == 2
    for ratio in ("upload_ratio", "resume_ratio", "resume_ratio_vs_download_or_hash"):
        assert result[ratio] > 0
    assert result["peak_rss_mib"] > 0
