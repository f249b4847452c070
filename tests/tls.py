"""A throwaway private CA and an HTTPS server whose certificate it signs, for tests of model
downloads from servers that public CAs know nothing about."""

from __future__ import annotations

import http.server
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.x509.oid import ExtendedKeyUsageOID

from stratus.devcluster import pki


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path


def issue(directory: Path, ip: str) -> Tls:
    """A new CA, and a serving certificate it signs for the address `ip` (and nothing else)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = pki.Authority.create(f"stratus-test-ca-{directory.name}")
    ca.write(directory)
    ca.issue(directory, "server", pki.name(ip), ExtendedKeyUsageOID.SERVER_AUTH, [pki.ip_san(ip)])
    return Tls(directory / "ca.crt", directory / "server.crt", directory / "server.key")


def serve_https(
    host: str, handler: type[http.server.BaseHTTPRequestHandler], tls: Tls
) -> http.server.ThreadingHTTPServer:
    """`handler` over TLS on `host` (a free port), served from a daemon thread; the caller
    calls shutdown()."""
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
