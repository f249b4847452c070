"""Model staging against a real HTTPS server on loopback, and from a claim's directory."""

from __future__ import annotations

import hashlib
import http.server
import ssl
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratus.devcluster import pki
from stratus.storage import StagingError, fetch
from stratus.storage.__main__ import main
from tests import tls

MODEL = b"\x00model-weights\x01" * 4096
DIGEST = hashlib.sha256(MODEL).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/models/v7/model.safetensors":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(MODEL)))
        self.end_headers()
        self.wfile.write(MODEL)

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def https_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    certs = tmp_path / "pki"
    pki.write_pki(certs, "10.96.0.1")  # a CA and a server certificate for 127.0.0.1
    monkeypatch.setenv("SSL_CERT_FILE", str(certs / "ca.crt"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / "apiserver.crt", certs / "apiserver.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_https_model_is_staged_and_verified(https_base: str, tmp_path: Path) -> None:
    staged = fetch(f"{https_base}/models/v7/model.safetensors", tmp_path / "m", DIGEST)
    assert staged == tmp_path / "m" / "model.safetensors"
    assert staged.read_bytes() == MODEL
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["model.safetensors"]


def test_a_sha256_mismatch_fails_clearly_and_stages_nothing(
    https_base: str, tmp_path: Path
) -> None:
    with pytest.raises(StagingError, match=f"sha256 mismatch: expected {'0' * 64}, got {DIGEST}"):
        fetch(f"{https_base}/models/v7/model.safetensors", tmp_path / "m", "0" * 64)
    assert list((tmp_path / "m").iterdir()) == []


def test_a_missing_model_names_the_uri(https_base: str, tmp_path: Path) -> None:
    with pytest.raises(StagingError, match=r"cannot download .*/missing\.bin: HTTP Error 404"):
        fetch(f"{https_base}/missing.bin", tmp_path / "m")


def test_cli_exit_code_and_termination_message(https_base: str, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    uri = f"{https_base}/models/v7/model.safetensors"
    args = ["fetch", "--uri", uri, "--dest", str(tmp_path / "m"), "--termination-log", str(log)]
    assert main([*args, "--sha256", DIGEST]) == 0
    assert main([*args, "--sha256", "f" * 64]) == 1
    assert "sha256 mismatch" in log.read_text()


@pytest.fixture
def private_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A server whose CA only the returned ca.crt names: the process's default trust (the
    image's public CAs) does not know it."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    issued = tls.issue(tmp_path / "private-ca", "127.0.0.1")
    server = tls.serve_https("127.0.0.1", Handler, issued)
    yield f"https://127.0.0.1:{server.server_address[1]}", issued.ca
    server.shutdown()


def test_a_private_ca_is_trusted_through_ca_file(
    private_ca: tuple[str, Path], tmp_path: Path
) -> None:
    base, ca = private_ca
    uri = f"{base}/models/v7/model.safetensors"
    staged = fetch(uri, tmp_path / "m", DIGEST, ca_file=ca)
    assert staged.read_bytes() == MODEL
    args = ["fetch", "--uri", uri, "--dest", str(tmp_path / "n"), "--sha256", DIGEST]
    assert main([*args, "--ca-file", str(ca), "--termination-log", str(tmp_path / "log")]) == 0
    assert (tmp_path / "n" / "model.safetensors").read_bytes() == MODEL


def test_a_private_ca_is_refused_without_its_ca_file(
    private_ca: tuple[str, Path], tmp_path: Path
) -> None:
    base, _ = private_ca
    with pytest.raises(StagingError, match=r"cannot download .*: .*CERTIFICATE_VERIFY_FAILED"):
        fetch(f"{base}/models/v7/model.safetensors", tmp_path / "m", DIGEST)
    assert list((tmp_path / "m").iterdir()) == []


def test_a_ca_file_is_the_only_trust(private_ca: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = private_ca
    other = tls.issue(tmp_path / "other-ca", "127.0.0.1").ca
    with pytest.raises(StagingError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(f"{base}/models/v7/model.safetensors", tmp_path / "m", DIGEST, ca_file=other)
    not_pem = tmp_path / "not-a-ca.crt"
    not_pem.write_text("hello")
    log = tmp_path / "termination-log"
    uri = f"{base}/models/v7/model.safetensors"
    args = ["fetch", "--uri", uri, "--dest", str(tmp_path / "n"), "--ca-file", str(not_pem)]
    assert main([*args, "--termination-log", str(log)]) == 1
    assert log.read_text().startswith(
        f"model staging failed: cannot load CA certificates from {not_pem}"
    )


def test_pvc_models_are_copied_from_the_mounted_claim(tmp_path: Path) -> None:
    root = tmp_path / "claim"
    (root / "bert" / "tokenizer").mkdir(parents=True)
    (root / "bert" / "weights.bin").write_bytes(MODEL)
    (root / "bert" / "tokenizer" / "vocab.txt").write_text("hello")
    staged = fetch("pvc://models/bert", tmp_path / "m", pvc_root=root)
    assert (staged / "tokenizer" / "vocab.txt").read_text() == "hello"
    single = fetch("pvc://models/bert/weights.bin", tmp_path / "n", DIGEST, pvc_root=root)
    assert single.read_bytes() == MODEL
    with pytest.raises(StagingError, match="/nope not found on claim models"):
        fetch("pvc://models/nope", tmp_path / "o", pvc_root=root)


def test_object_stores_need_their_client_and_other_schemes_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(StagingError, match="s3:// needs boto3"):
        fetch("s3://bucket/model.bin", tmp_path / "m")
    with pytest.raises(StagingError, match="unsupported scheme 'ftp'"):
        fetch("ftp://host/model.bin", tmp_path / "m")
