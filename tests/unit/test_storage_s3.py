"""Model staging from a real S3 server: SeaweedFS's `weed` on loopback, the store the local
cluster runs (objectstore.standalone). One object, a directory in parallel ranged parts, and every
way it goes wrong, each a one-line reason. Without the binary these tests fail with the command
that builds it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from stratus.devcluster import objectstore
from stratus.devcluster.cluster import free_port
from stratus.storage import StagingError, fetch, s3
from stratus.storage.__main__ import main

BUCKET = objectstore.BUCKET
MODEL = b"\x00model-weights\x01" * 4096
DIGEST = hashlib.sha256(MODEL).hexdigest()
# A directory model: a file of several ranged parts (at a part size of 1 MiB), one in a
# subdirectory, one empty.
DIRECTORY = {
    "weights/model-00001.safetensors": os.urandom((3 << 20) + 12345),
    "tokenizer/vocab.txt": b"hello\nworld\n",
    "config.json": b'{"hidden": 768}',
    "empty.txt": b"",
}
SINGLE = "models/single/model.safetensors"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[objectstore.Credentials]:
    """SeaweedFS on free loopback ports, with the test objects uploaded."""
    with objectstore.standalone(tmp_path_factory.mktemp("objectstore")) as creds:
        upload(objectstore.client(creds))
        yield creds


def manifest(files: dict[str, bytes]) -> bytes:
    listed = {
        name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in files.items()
    }
    return json.dumps({"files": listed}).encode()


def put_directory(client: Any, prefix: str, files: dict[str, bytes], listed: bytes) -> None:
    for name, data in files.items():
        client.put_object(Bucket=BUCKET, Key=prefix + name, Body=data)
    client.put_object(Bucket=BUCKET, Key=prefix + s3.MANIFEST, Body=listed)


def upload(client: Any) -> None:
    client.put_object(Bucket=BUCKET, Key=SINGLE, Body=MODEL)
    put_directory(client, "models/bert/", DIRECTORY, manifest(DIRECTORY))
    # One file whose bytes are not those its manifest lists (the same size: only the digest
    # tells).
    corrupt = {**DIRECTORY, "tokenizer/vocab.txt": b"HELLO\nWORLD\n"}
    put_directory(client, "models/corrupt/", corrupt, manifest(DIRECTORY))
    shorter = {**DIRECTORY, "config.json": b"{}"}
    put_directory(client, "models/resized/", shorter, manifest(DIRECTORY))
    client.put_object(Bucket=BUCKET, Key="models/unlisted/weights.bin", Body=MODEL)
    put_directory(client, "models/escape/", {}, json.dumps({"files": {"../single/x": {}}}).encode())


@pytest.fixture
def s3env(
    store: objectstore.Credentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> objectstore.Credentials:
    """The environment the staging init container gets, and nothing of this machine's: no AWS
    config files, no instance metadata."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name, value in store.env().items():
        monkeypatch.setenv(name, value)
    return store


def header(request: Any, name: str) -> str | None:
    value = request.headers.get(name)
    return value.decode() if isinstance(value, bytes) else value


def only_line(log: Path) -> str:
    text = log.read_text()
    assert "\n" not in text
    return text


def test_a_single_object_is_staged_and_verified(
    s3env: objectstore.Credentials, tmp_path: Path
) -> None:
    staged = fetch(f"s3://{BUCKET}/{SINGLE}", tmp_path / "m", DIGEST)
    assert staged == tmp_path / "m" / "model.safetensors"
    assert staged.read_bytes() == MODEL
    with pytest.raises(
        StagingError, match=f"{SINGLE}: sha256 mismatch: expected {'0' * 64}, got {DIGEST}"
    ):
        fetch(f"s3://{BUCKET}/{SINGLE}", tmp_path / "n", "0" * 64)
    assert list((tmp_path / "n").iterdir()) == []


def test_a_directory_is_staged_in_parallel_ranged_parts_pinned_to_the_etag(
    s3env: objectstore.Credentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3, "PART_SIZE", 1 << 20)
    gets: list[tuple[str, str | None, str | None]] = []
    make_client = boto3.session.Session.client

    def recording_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = make_client(self, *args, **kwargs)

        def record(request: Any, **_: Any) -> None:
            key = urllib.parse.unquote(request.url.split(f"/{BUCKET}/", 1)[1])
            gets.append((key, header(request, "Range"), header(request, "If-Match")))

        client.meta.events.register("before-send.s3.GetObject", record)
        return client

    monkeypatch.setattr(boto3.session.Session, "client", recording_client)
    staged = fetch(f"s3://{BUCKET}/models/bert/", tmp_path / "m")
    assert staged == tmp_path / "m" / "bert"
    for name, data in DIRECTORY.items():
        assert (staged / name).read_bytes() == data
    assert json.loads((staged / s3.MANIFEST).read_bytes()) == json.loads(manifest(DIRECTORY))
    big = "models/bert/weights/model-00001.safetensors"
    ranges = sorted(str(r) for key, r, _ in gets if key == big)
    size = len(DIRECTORY["weights/model-00001.safetensors"])
    # 3 MiB and a bit, in 1 MiB parts, the last one open-ended (the size is checked after).
    assert ranges == sorted(
        f"bytes={start}-{start + (1 << 20) - 1 if start + (1 << 20) < size else ''}"
        for start in range(0, size, 1 << 20)
    )
    etag = objectstore.client(s3env).head_object(Bucket=BUCKET, Key=big)["ETag"]
    assert {match for key, _, match in gets if key == big} == {etag}


def test_a_directory_with_one_corrupt_file_fails_in_one_line_naming_it(
    s3env: objectstore.Credentials, tmp_path: Path
) -> None:
    log = tmp_path / "termination-log"
    dest = tmp_path / "m"
    uri = f"s3://{BUCKET}/models/corrupt/"
    assert main(["fetch", "--uri", uri, "--dest", str(dest), "--termination-log", str(log)]) == 1
    expected = hashlib.sha256(DIRECTORY["tokenizer/vocab.txt"]).hexdigest()
    actual = hashlib.sha256(b"HELLO\nWORLD\n").hexdigest()
    assert only_line(log) == (
        f"model staging failed: {uri}: tokenizer/vocab.txt: sha256 mismatch: "
        f"expected {expected}, got {actual}"
    )
    assert list(dest.iterdir()) == []


def test_the_spec_pins_a_directory_by_its_manifests_digest(
    s3env: objectstore.Credentials, tmp_path: Path
) -> None:
    pinned = hashlib.sha256(manifest(DIRECTORY)).hexdigest()
    staged = fetch(f"s3://{BUCKET}/models/bert/", tmp_path / "m", pinned)
    assert (staged / "config.json").read_bytes() == DIRECTORY["config.json"]
    with pytest.raises(
        StagingError,
        match=f"stratus-manifest.json: sha256 mismatch: expected {'1' * 64}, got {pinned}",
    ):
        fetch(f"s3://{BUCKET}/models/bert/", tmp_path / "n", "1" * 64)
    assert list((tmp_path / "n").iterdir()) == []


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        (
            f"s3://{BUCKET}/models/nope.bin",
            f"models/nope.bin not found in bucket {BUCKET} "
            "(for a directory model, end the URI with '/')",
        ),
        ("s3://no-such-bucket/models/m.bin", "bucket no-such-bucket not found"),
        (f"s3://{BUCKET}/models/unlisted/", "no stratus-manifest.json in this prefix"),
        (
            f"s3://{BUCKET}/models/resized/",
            f"config.json: 2 bytes in the bucket, {len(DIRECTORY['config.json'])} in "
            "stratus-manifest.json",
        ),
        (f"s3://{BUCKET}/models/escape/", "'../single/x' is not a relative path inside"),
    ],
)
def test_what_is_missing_or_wrong_in_the_bucket_is_named(
    s3env: objectstore.Credentials, tmp_path: Path, uri: str, reason: str
) -> None:
    log = tmp_path / "termination-log"
    args = ["fetch", "--uri", uri, "--dest", str(tmp_path / "m"), "--termination-log", str(log)]
    assert main(args) == 1
    line = only_line(log)
    assert line.startswith(f"model staging failed: {uri}: ")
    assert reason in line
    assert list((tmp_path / "m").iterdir()) == []


def test_missing_credentials_say_which_secret_to_set(
    s3env: objectstore.Credentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StagingError) as failed:
        fetch(f"s3://{BUCKET}/{SINGLE}", tmp_path / "m")
    assert str(failed.value) == (
        f"s3://{BUCKET}/{SINGLE}: no credentials for {SINGLE}: set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (the model's credentialsSecret) or give the pod a cloud identity"
    )


@pytest.mark.parametrize(
    ("variable", "code"),
    [
        ("AWS_ACCESS_KEY_ID", "InvalidAccessKeyId"),
        ("AWS_SECRET_ACCESS_KEY", "SignatureDoesNotMatch"),
    ],
)
def test_a_wrong_key_is_refused_by_the_store_and_never_shown(
    s3env: objectstore.Credentials,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    code: str,
) -> None:
    wrong = "WRONG" + os.environ[variable][5:]
    monkeypatch.setenv(variable, wrong)
    log = tmp_path / "termination-log"
    uri = f"s3://{BUCKET}/models/bert/"
    args = ["fetch", "--uri", uri, "--dest", str(tmp_path / "m"), "--termination-log", str(log)]
    assert main(args) == 1
    line = only_line(log)
    assert line == (
        f"model staging failed: {uri}: access to models/bert/stratus-manifest.json denied "
        f"({code}): check the keys in the model's credentialsSecret and the bucket's permissions"
    )
    for secret in (wrong, s3env.access_key_id, s3env.secret_access_key):
        assert secret not in line


def test_a_model_past_the_size_limit_is_refused_before_any_download(
    s3env: objectstore.Credentials, tmp_path: Path
) -> None:
    total = sum(len(d) for d in DIRECTORY.values())
    with pytest.raises(StagingError, match=f"{total} bytes \\(stratus-manifest.json\\), over"):
        fetch(f"s3://{BUCKET}/models/bert/", tmp_path / "m", max_bytes=total - 1)
    with pytest.raises(StagingError, match=f"{len(MODEL)} bytes, over the size limit of 1000"):
        fetch(f"s3://{BUCKET}/{SINGLE}", tmp_path / "m", max_bytes=1000)
    assert list((tmp_path / "m").iterdir()) == []


def test_an_object_replaced_during_the_download_fails_rather_than_mixes(
    s3env: objectstore.Credentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "models/replaced/model.bin"
    client = objectstore.client(s3env)
    client.put_object(Bucket=BUCKET, Key=key, Body=MODEL)
    head = s3._Store.head

    def head_then_replace(self: Any, name: str) -> tuple[int, str | None]:
        seen = head(self, name)
        client.put_object(Bucket=BUCKET, Key=key, Body=MODEL[::-1])
        return seen

    monkeypatch.setattr(s3._Store, "head", head_then_replace)
    with pytest.raises(StagingError, match=f"{key} changed while it was downloaded"):
        fetch(f"s3://{BUCKET}/{key}", tmp_path / "m")
    assert list((tmp_path / "m").iterdir()) == []


def test_gs_uris_take_the_same_path_through_an_endpoint(
    s3env: objectstore.Credentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    staged = fetch(f"gs://{BUCKET}/models/bert/", tmp_path / "m", endpoint=s3env.endpoint)
    assert (staged / "tokenizer" / "vocab.txt").read_bytes() == DIRECTORY["tokenizer/vocab.txt"]


def test_an_unreachable_endpoint_is_named(s3env: objectstore.Credentials, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StagingError, match=f"cannot reach {closed}"):
        fetch(f"s3://{BUCKET}/{SINGLE}", tmp_path / "m", endpoint=closed)


def test_the_init_containers_command_stages_with_the_environment_it_gets(
    s3env: objectstore.Credentials, tmp_path: Path
) -> None:
    """As the built Deployment runs it: the endpoint and keys only in the environment."""
    dest = tmp_path / "models"
    command = [
        sys.executable,
        "-m",
        "stratus.storage",
        "fetch",
        "--uri",
        f"s3://{BUCKET}/models/bert/",
    ]
    done = subprocess.run(
        [*command, "--dest", str(dest), "--termination-log", str(tmp_path / "log")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"staged s3://{BUCKET}/models/bert/ at {dest / 'bert'}"
    assert (dest / "bert" / "weights" / "model-00001.safetensors").read_bytes() == DIRECTORY[
        "weights/model-00001.safetensors"
    ]
