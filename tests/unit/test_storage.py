"""Model staging against a real HTTPS server on loopback, and from a claim's directory."""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import re
import ssl
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratus.api.inferenceservice import SIZE_PATTERN, InferenceServiceSpec
from stratus.devcluster import pki
from stratus.podspec import Owner
from stratus.serving import builders
from stratus.serving.labels import REVISION_LABEL
from stratus.serving.views import StagingFailure, staging_failure
from stratus.storage import StagingError, fetch, size_bytes
from stratus.storage import __main__ as storage_main
from stratus.storage.__main__ import main
from stratus.storage.redact import redact
from tests import tls

MODEL = b"\x00model-weights\x01" * 4096
DIGEST = hashlib.sha256(MODEL).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    """The model, and the ways a server can fail to deliver it."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.close_connection = True
        path, _, query = self.path.partition("?")
        if path == "/models/v7/model.safetensors":
            self.send_response(200)
            self.send_header("Content-Length", str(len(MODEL)))
            self.end_headers()
            self.wfile.write(MODEL)
        elif path == "/short":  # the connection closes after half the promised body
            self.send_response(200)
            self.send_header("Content-Length", str(len(MODEL)))
            self.end_headers()
            self.wfile.write(MODEL[: len(MODEL) // 2])
        elif path in ("/chunked", "/chunked-cut"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for block in (MODEL[:30000], MODEL[30000:]):
                self.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
                if path == "/chunked-cut":
                    return
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/redirect":  # to the URL in the query
            self.send_response(302)
            self.send_header("Location", urllib.parse.unquote(query.removeprefix("to=")))
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/private/model.bin":
            if self.headers.get("Authorization") != "Basic " + base64.b64encode(
                b"user:s3cret"
            ).decode("ascii"):
                self.send_error(401)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(MODEL)))
            self.end_headers()
            self.wfile.write(MODEL)
        else:
            self.send_error(404)

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


MODEL_PATH = "/models/v7/model.safetensors"


def staged_names(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir())


def test_a_body_shorter_than_its_content_length_is_not_staged(
    https_base: str, tmp_path: Path
) -> None:
    half = len(MODEL) // 2
    with pytest.raises(StagingError, match=f"body ended after {half} of {len(MODEL)} bytes"):
        fetch(f"{https_base}/short", tmp_path / "m")
    assert staged_names(tmp_path / "m") == []


def test_a_cut_chunked_body_fails_and_a_whole_one_is_staged(
    https_base: str, tmp_path: Path
) -> None:
    assert fetch(f"{https_base}/chunked", tmp_path / "m", DIGEST).read_bytes() == MODEL
    with pytest.raises(StagingError, match=r"cannot download .*/chunked-cut: IncompleteRead"):
        fetch(f"{https_base}/chunked-cut", tmp_path / "n")
    assert staged_names(tmp_path / "n") == []


@pytest.fixture
def http_base() -> Iterator[str]:
    """The same server without TLS."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def redirect(base: str, to: str) -> str:
    return f"{base}/redirect?to={urllib.parse.quote(to, safe='')}"


def test_a_redirect_from_https_to_http_is_refused(
    https_base: str, http_base: str, tmp_path: Path
) -> None:
    plain = f"{http_base}{MODEL_PATH}?X-Amz-Signature=t0ken"
    with pytest.raises(StagingError) as refused:
        fetch(redirect(https_base, plain), tmp_path / "m", DIGEST)
    assert str(refused.value) == (
        f"{https_base}/redirect?***: refused a redirect (302) to {http_base}{MODEL_PATH}?***: "
        "only https:// is followed"
    )
    assert staged_names(tmp_path / "m") == []
    staged = fetch(redirect(https_base, f"{https_base}{MODEL_PATH}"), tmp_path / "n", DIGEST)
    assert staged.read_bytes() == MODEL


def test_a_killed_downloads_leftovers_are_removed_at_start(https_base: str, tmp_path: Path) -> None:
    dest = tmp_path / "m"
    (dest / ".staging-k1ll3d").mkdir(parents=True)
    (dest / ".staging-k1ll3d" / "model.safetensors").write_bytes(MODEL[:100])
    (dest / ".staging-file").write_bytes(b"partial")
    (dest / "model.safetensors").write_bytes(b"a previous run's copy")
    assert fetch(f"{https_base}{MODEL_PATH}", dest, DIGEST).read_bytes() == MODEL
    assert staged_names(dest) == ["model.safetensors"]


def test_a_model_past_the_size_limit_is_aborted(https_base: str, tmp_path: Path) -> None:
    uri = f"{https_base}{MODEL_PATH}"
    over = f"{len(MODEL)} bytes \\(Content-Length\\), over the size limit of 1000 bytes"
    with pytest.raises(StagingError, match=over):
        fetch(uri, tmp_path / "m", max_bytes=1000)
    # Without a Content-Length, the download stops once it passes the limit.
    with pytest.raises(StagingError, match="aborted past the size limit of 40000 bytes"):
        fetch(f"{https_base}/chunked", tmp_path / "n", max_bytes=40000)
    assert fetch(uri, tmp_path / "o", DIGEST, max_bytes=len(MODEL)).read_bytes() == MODEL
    log = tmp_path / "termination-log"
    args = ["fetch", "--uri", uri, "--dest", str(tmp_path / "p"), "--max-size", "1Ki"]
    assert main([*args, "--termination-log", str(log)]) == 1
    assert "over the size limit of 1024 bytes" in log.read_text()
    assert staged_names(tmp_path / "m") == staged_names(tmp_path / "n") == []
    assert staged_names(tmp_path / "p") == []


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("52428800", 52428800),
        ("1Ki", 1024),
        ("100Gi", 100 * 2**30),
        ("1T", 10**12),
        ("999999Ti", 999999 * 2**40),
        ("999999999999999", 999999999999999),
    ],
)
def test_sizes_read_as_quantities(text: str, size: int) -> None:
    # Every size the API accepts is one staging can read, and fits the API server's int64.
    assert re.fullmatch(SIZE_PATTERN, text)
    assert size_bytes(text) == size < 2**63


def claim(tmp_path: Path) -> Path:
    """A claim with a model, next to a secret that is not on it."""
    root = tmp_path / "claim"
    (root / "bert").mkdir(parents=True)
    (root / "bert" / "weights.bin").write_bytes(MODEL)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "token").write_text("t0ken")
    return root


@pytest.mark.parametrize(
    ("link", "target", "uri", "refusal"),
    [
        (None, None, "pvc://models/../secret/token", "'..' is not allowed in a pvc:// path"),
        (None, None, "pvc://models/bert/../../secret/token", "'..' is not allowed"),
        ("escape.bin", "../secret/token", "pvc://models/escape.bin", "/escape.bin leads outside"),
        ("bert/leak", "../../secret/token", "pvc://models/bert", "/bert/leak leads outside"),
        ("linked", "../secret", "pvc://models/linked/token", "/linked/token leads outside"),
        ("bert/loop", "..", "pvc://models/bert", "/bert/loop/bert is a symlink loop"),
        ("bert/gone", "nowhere", "pvc://models/bert", "/bert/gone is a dangling symlink"),
    ],
)
def test_pvc_paths_and_symlinks_never_leave_the_claim(
    tmp_path: Path, link: str | None, target: str | None, uri: str, refusal: str
) -> None:
    root = claim(tmp_path)
    if link and target:
        (root / link).symlink_to(target)
    with pytest.raises(StagingError, match=re.escape(refusal)):
        fetch(uri, tmp_path / "m", pvc_root=root)
    assert staged_names(tmp_path / "m") == []


def test_symlinks_inside_the_claim_are_followed_and_claims_are_capped(tmp_path: Path) -> None:
    root = claim(tmp_path)
    (root / "alias.bin").symlink_to("bert/weights.bin")
    (root / "bert" / "copy.bin").symlink_to(root / "bert" / "weights.bin")
    assert fetch("pvc://models/alias.bin", tmp_path / "m", DIGEST, pvc_root=root).name == (
        "alias.bin"
    )
    staged = fetch("pvc://models/bert", tmp_path / "n", pvc_root=root)
    assert (staged / "copy.bin").read_bytes() == MODEL
    assert not (staged / "copy.bin").is_symlink()
    with pytest.raises(StagingError, match=f"{2 * len(MODEL)} bytes, over the size limit of 100"):
        fetch("pvc://models/bert", tmp_path / "o", pvc_root=root, max_bytes=100)


def test_every_failure_is_one_line_in_the_termination_message(
    https_base: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = tmp_path / "termination-log"
    monkeypatch.setenv("STRATUS_TERMINATION_LOG", str(log))
    model = f"{https_base}{MODEL_PATH}"

    def fails(*args: str) -> str:
        assert main(["fetch", *args]) == 1
        line = log.read_text()
        assert capsys.readouterr().err == f"{line}\n"
        assert "\n" not in line
        assert line.startswith("model staging failed: ")
        return line.removeprefix("model staging failed: ")

    dest = str(tmp_path / "m")
    assert fails("--uri", f"{https_base}/chunked-cut", "--dest", dest).startswith(
        f"cannot download {https_base}/chunked-cut: IncompleteRead("
    )
    outside = "pvc://models/../../../etc/passwd"
    assert fails("--uri", outside, "--dest", dest, "--pvc-root", str(tmp_path)) == (
        f"{outside}: '..' is not allowed in a pvc:// path"
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert fails("--uri", model, "--dest", str(blocker / "m")).startswith(
        f"{model}: cannot prepare {blocker / 'm'}: [Errno 20] Not a directory"
    )
    with monkeypatch.context() as patched:
        denied = PermissionError(13, "Permission denied")
        patched.setattr(os, "replace", lambda *_: (_ for _ in ()).throw(denied))
        assert fails("--uri", model, "--dest", dest) == f"{model}: [Errno 13] Permission denied"
    with monkeypatch.context() as patched:

        def bug(*_: object) -> None:
            raise KeyError("a bug")

        patched.setattr(storage_main, "fetch", bug)
        assert fails("--uri", model, "--dest", dest) == "KeyError: 'a bug'"
    assert fails("--uri", model) == "bad arguments: the following arguments are required: --dest"
    assert fails("--uri", model, "--dest", dest, "--max-size", "lots") == (
        "bad arguments: argument --max-size: invalid size_bytes value: 'lots'"
    )
    assert staged_names(tmp_path / "m") == []


def test_credentials_and_query_strings_are_never_shown(
    https_base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = https_base.replace("https://", "https://user:s3cret@")
    shown = https_base.replace("https://", "https://***@")
    # Userinfo is sent as Basic authorization (the server refuses the model without it).
    uri = f"{secret}/private/model.bin?X-Amz-Signature=t0ken"
    assert fetch(uri, tmp_path / "m", DIGEST).read_bytes() == MODEL
    log = tmp_path / "termination-log"
    args = ["--dest", str(tmp_path / "n"), "--termination-log", str(log)]
    assert main(["fetch", "--uri", uri, *args]) == 0
    assert capsys.readouterr().out == (
        f"staged {shown}/private/model.bin?*** at {tmp_path / 'n' / 'model.bin'}\n"
    )
    missing = f"{secret}/missing.bin?X-Amz-Signature=t0ken"
    assert main(["fetch", "--uri", missing, *args]) == 1
    reason = f"model staging failed: cannot download {shown}/missing.bin?***: HTTP Error 404: "
    assert log.read_text() == f"{reason}Not Found"
    assert capsys.readouterr().err == f"{reason}Not Found\n"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://user:pw@host:8443/m.bin?sig=1#frag", "https://***@host:8443/m.bin?***#***"),
        ("https://host/m.bin", "https://host/m.bin"),
        ("s3://bucket/key?versionId=3", "s3://bucket/key?***"),
        ("https://[::1/m", "https://***"),
        (
            "failed: 'https://a:b@h/x' then s3://k@b/y?z, done",
            "failed: 'https://***@h/x' then s3://***@b/y?***, done",
        ),
    ],
)
def test_uris_are_redacted(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_trust_is_read_anew_for_each_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.12's urllib makes its default opener's SSL context once and keeps it for the
    whole process: the trust the first download found (under pytest, another test's CA) would
    stay. Staging makes its own opener and context for each download."""

    class Refuse(urllib.request.BaseHandler):
        def https_open(self, _: urllib.request.Request) -> None:
            raise AssertionError("the process-wide opener was used")

    shared = urllib.request.OpenerDirector()
    shared.add_handler(Refuse())
    monkeypatch.setattr(urllib.request, "_opener", shared)
    for name in ("first-ca", "second-ca"):
        issued = tls.issue(tmp_path / name, "127.0.0.1")
        server = tls.serve_https("127.0.0.1", Handler, issued)
        monkeypatch.setenv("SSL_CERT_FILE", str(issued.ca))
        try:
            uri = f"https://127.0.0.1:{server.server_address[1]}{MODEL_PATH}"
            assert fetch(uri, tmp_path / name / "m", DIGEST).read_bytes() == MODEL
        finally:
            server.shutdown()


def pod(terminated: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"labels": {REVISION_LABEL: "abc"}},
        "status": {"initContainerStatuses": [{"state": {"terminated": terminated}}]},
    }


@pytest.mark.parametrize(
    ("terminated", "message"),
    [
        (
            {"exitCode": 1, "message": "model staging failed: https://u:p@h/m?sig=1: 404\n"},
            "model staging failed: https://***@h/m?***: 404",
        ),
        (
            {
                "exitCode": 1,
                "message": 'Traceback (most recent call last):\n  File "x.py"\n'
                "OSError: cannot read s3://b/m?token=t0ken",
            },
            "OSError: cannot read s3://b/m?***",
        ),
        ({"exitCode": 137, "reason": "OOMKilled"}, "OOMKilled, exit code 137"),
        ({"exitCode": 1, "reason": "Error", "message": " "}, "exit code 1"),
    ],
)
def test_the_status_quotes_one_redacted_line(terminated: dict[str, Any], message: str) -> None:
    assert staging_failure(pod(terminated)) == StagingFailure("abc", message)


def init_container(**model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = InferenceServiceSpec.model_validate(
        {"image": "serve:1", "model": {"uri": "https://h/m.bin", **model}}
    )
    owner = Owner("InferenceService", "web", "ns", "uid")
    built = builders.build_deployment(owner, spec, "abc", 1, "stage:1")["spec"]["template"]
    (init,) = built["spec"]["initContainers"]
    (volume,) = (v for v in built["spec"]["volumes"] if v["name"] == builders.MODEL_VOLUME)
    return init, volume


def test_the_size_limit_caps_the_download_and_the_model_volume() -> None:
    init, volume = init_container()
    assert volume == {"name": "stratus-model", "emptyDir": {"sizeLimit": "100Gi"}}
    assert init["command"][init["command"].index("--max-size") + 1] == "100Gi"
    init, volume = init_container(sizeLimit="20Gi")
    assert volume["emptyDir"] == {"sizeLimit": "20Gi"}
    assert init["command"][init["command"].index("--max-size") + 1] == "20Gi"
    # The reason staging writes reaches the pod's status.
    assert init["terminationMessagePath"] == "/dev/termination-log"
    assert init["terminationMessagePolicy"] == "File"
