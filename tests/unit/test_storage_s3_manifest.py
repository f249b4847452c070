"""Directory models' manifests, the store a URI names, and the credentials a failure line never
shows: the parts of s3:// and gs:// staging that need no server."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from stratus.storage import StagingError, s3
from stratus.storage.__main__ import main, reason

SHA = "a" * 64


def manifest(files: Any) -> bytes:
    return json.dumps({"files": files}).encode()


def test_a_manifest_lists_relative_files_with_size_and_digest() -> None:
    entries = s3.parse_manifest(
        manifest(
            {"config.json": {"size": 10, "sha256": SHA}, "w/part-1.bin": {"size": 0, "sha256": SHA}}
        ),
        "m",
    )
    assert [(str(e.path), e.size, e.sha256) for e in entries] == [
        ("config.json", 10, SHA),
        ("w/part-1.bin", 0, SHA),
    ]


@pytest.mark.parametrize(
    ("files", "why"),
    [
        ({"../escape.bin": {"size": 1, "sha256": SHA}}, "not a relative path inside"),
        ({"/etc/passwd": {"size": 1, "sha256": SHA}}, "not a relative path inside"),
        ({"a//b": {"size": 1, "sha256": SHA}}, "not a relative path inside"),
        ({"./a": {"size": 1, "sha256": SHA}}, "not a relative path inside"),
        ({"a/..": {"size": 1, "sha256": SHA}}, "not a relative path inside"),
        ({"": {"size": 1, "sha256": SHA}}, "not a relative path inside"),
        ({"a\nb": {"size": 1, "sha256": SHA}}, "not a relative path inside"),
        ({"a": {"size": -1, "sha256": SHA}}, "size must be a whole number"),
        ({"a": {"size": "1", "sha256": SHA}}, "size must be a whole number"),
        ({"a": {"size": True, "sha256": SHA}}, "size must be a whole number"),
        ({"a": {"size": 1, "sha256": "A" * 64}}, "sha256 must be 64 lowercase hex"),
        ({"a": {"size": 1}}, "sha256 must be 64 lowercase hex"),
        ({"a": "abc"}, "expected"),
        ({"a": {"size": 1, "sha256": SHA}, "a/b": {"size": 1, "sha256": SHA}}, "as a file and"),
        ({s3.MANIFEST: {"size": 1, "sha256": SHA}}, "lists itself"),
        ({}, "lists no files"),
        (["a"], "lists no files"),
    ],
)
def test_a_manifest_that_could_stage_outside_or_lie_is_refused(files: Any, why: str) -> None:
    with pytest.raises(StagingError, match=why):
        s3.parse_manifest(manifest(files), "s3://b/p/: stratus-manifest.json")


@pytest.mark.parametrize("data", [b"not json", b"[]", b'{"file": {}}', b'{"files": 3}'])
def test_what_is_not_a_manifest_says_what_one_is(data: bytes) -> None:
    with pytest.raises(StagingError, match=r"not a manifest|lists no files"):
        s3.parse_manifest(data, "m")


def test_the_manifest_command_writes_what_staging_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "bert"
    (model / "tokenizer").mkdir(parents=True)
    (model / "weights.bin").write_bytes(b"\x00" * 1000)
    (model / "tokenizer" / "vocab.txt").write_text("hello")
    assert main(["manifest", str(model)]) == 0
    written = (model / s3.MANIFEST).read_bytes()
    entries = {str(e.path): e for e in s3.parse_manifest(written, "m")}
    assert set(entries) == {"weights.bin", "tokenizer/vocab.txt"}
    assert entries["weights.bin"].size == 1000
    assert entries["tokenizer/vocab.txt"].sha256 == hashlib.sha256(b"hello").hexdigest()
    # Written again, the manifest leaves itself out.
    assert main(["manifest", str(model)]) == 0
    assert (model / s3.MANIFEST).read_bytes() == written
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StagingError, match="holds no files"):
        s3.write_manifest(empty)
    log = tmp_path / "log"
    monkeypatch.setenv("STRATUS_TERMINATION_LOG", str(log))
    assert main(["manifest", str(tmp_path / "nope")]) == 1
    assert log.read_text() == f"model staging failed: {tmp_path / 'nope'} is not a directory"


def test_the_store_is_the_endpoint_given_or_the_environments_or_gcs_for_gs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    assert s3.endpoint_for("s3", None) is None
    assert s3.endpoint_for("gs", None) == "https://storage.googleapis.com"
    assert s3.endpoint_for("s3", "http://store:8333/") == "http://store:8333"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://env-store:8333")
    assert s3.endpoint_for("s3", None) == "http://env-store:8333"
    assert s3.endpoint_for("gs", None) == "http://env-store:8333"
    assert s3.endpoint_for("gs", "https://other") == "https://other"


def test_a_failure_line_never_shows_the_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY123")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "")
    line = reason(
        RuntimeError(
            "signed with AKIAEXAMPLEKEY123 and wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
            "at s3://user:pass@bucket/m?X-Amz-Signature=1"
        )
    )
    assert "AKIAEXAMPLEKEY123" not in line
    assert "wJalrXUtnFEMI" not in line
    assert "pass" not in line
    assert "\n" not in line
    assert line == (
        "model staging failed: RuntimeError: signed with *** and *** at s3://***@bucket/m?***"
    )


def test_without_boto3_an_s3_model_fails_naming_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "boto3", None)
    log = tmp_path / "log"
    args = ["fetch", "--uri", "gs://models/bert/", "--dest", str(tmp_path / "m")]
    assert main([*args, "--termination-log", str(log)]) == 1
    assert log.read_text().startswith(
        "model staging failed: gs://models/bert/: gs:// needs boto3 in the staging image"
    )
    assert list((tmp_path / "m").iterdir()) == []
