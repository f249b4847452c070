"""Certificates and keys for the local control plane: one CA, the API server's serving pair, a
client pair per component identity, and the service-account signing key."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class Identity:
    """A client certificate's subject: the user name and groups the API server will see."""

    file_stem: str
    user: str
    groups: tuple[str, ...] = ()


# system:masters is the bootstrap superuser group; the other two users are bound by the API
# server's bootstrap RBAC policy to exactly what those components need.
ADMIN = Identity("admin", "stratus-admin", ("system:masters",))
CONTROLLER_MANAGER = Identity("kube-controller-manager", "system:kube-controller-manager")
SCHEDULER = Identity("kube-scheduler", "system:kube-scheduler")
KWOK = Identity("kwok", "stratus-kwok", ("system:masters",))
# The real node's identities: the bootstrap policy binds system:kube-proxy to what kube-proxy
# needs, and the Node authorizer gives system:node:<name> its own node's objects.
KUBE_PROXY = Identity("kube-proxy", "system:kube-proxy")
# How the API server authenticates to kubelets (logs, exec, port-forward).
KUBELET_CLIENT = Identity("apiserver-kubelet-client", "stratus-apiserver", ("system:masters",))
# How the API server's aggregator authenticates to metrics-server; the API server accepts this
# name alone in its request headers.
FRONT_PROXY = Identity("front-proxy-client", "front-proxy-client")
# metrics-server reads every node's kubelet and delegates its own authentication and
# authorization to the API server: a development component, trusted like kwok.
METRICS_SERVER = Identity("metrics-server", "system:metrics-server", ("system:masters",))
# Kueue (`stratus dev up --kueue`) manages Jobs, Workloads and queues cluster-wide: a development
# component, trusted like kwok.
KUEUE = Identity("kueue", "stratus-kueue", ("system:masters",))
# Only a cluster with a real node runs metrics-server: kwok's nodes have no kubelet to read.
NODE_IDENTITIES = (FRONT_PROXY, METRICS_SERVER)
METRICS_SERVER_SERVICE = "metrics-server.kube-system.svc"
CLIENT_IDENTITIES = (ADMIN, CONTROLLER_MANAGER, SCHEDULER, KWOK, KUBE_PROXY, KUBELET_CLIENT, KUEUE)


def node_identity(node: str) -> Identity:
    return Identity(f"node-{node}", f"system:node:{node}", ("system:nodes",))


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class Authority:
    """A certificate authority that writes the pairs it signs as `<stem>.crt`/`<stem>.key`."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, common_name: str) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = name(common_name)
        cert = (
            _builder(subject, subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def load(cls, directory: Path, stem: str = "ca") -> Authority:
        """The authority `write` left in `directory` (the cluster's CA, to sign more pairs)."""
        key = serialization.load_pem_private_key((directory / f"{stem}.key").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{directory / stem}.key is not an EC key")
        cert = x509.load_pem_x509_certificate((directory / f"{stem}.crt").read_bytes())
        return cls(key, cert)

    def write(self, directory: Path, stem: str = "ca") -> None:
        _write_key(directory / f"{stem}.key", self.key)
        _write_cert(directory / f"{stem}.crt", self.cert)

    def issue(
        self,
        directory: Path,
        stem: str,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        sans: list[x509.GeneralName] | None = None,
    ) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = _builder(subject, self.cert.subject, key.public_key()).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        _write_key(directory / f"{stem}.key", key)
        _write_cert(directory / f"{stem}.crt", builder.sign(self.key, hashes.SHA256()))


def ip_san(address: str) -> x509.GeneralName:
    return x509.IPAddress(ipaddress.ip_address(address))


def write_pki(
    directory: Path, service_ip: str, node: str | None = None, node_ip: str | None = None
) -> None:
    """Write every certificate and key the control plane needs into `directory`; with `node`,
    also the real node's kubelet client and serving pairs (the kubelet is reached at
    `node_ip`)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = Authority.create("stratus-dev-ca")
    ca.write(directory)
    ca.issue(
        directory,
        "apiserver",
        name("kube-apiserver"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"),
            x509.DNSName("kubernetes.default.svc.cluster.local"),
            ip_san("127.0.0.1"),
            ip_san(service_ip),
            *([ip_san(node_ip)] if node_ip else []),
        ],
    )
    identities: tuple[Identity, ...] = CLIENT_IDENTITIES
    if node and node_ip:
        identities = (*identities, *NODE_IDENTITIES, node_identity(node))
        ca.issue(
            directory,
            "kubelet-serving",
            name(f"system:node:{node}", ("system:nodes",)),
            ExtendedKeyUsageOID.SERVER_AUTH,
            [x509.DNSName(node), ip_san(node_ip)],
        )
        # The aggregator dials the Service's endpoint and checks the Service's DNS name.
        ca.issue(
            directory,
            "metrics-server-serving",
            name("metrics-server"),
            ExtendedKeyUsageOID.SERVER_AUTH,
            [x509.DNSName(METRICS_SERVER_SERVICE), ip_san(node_ip)],
        )
    for identity in identities:
        ca.issue(
            directory,
            identity.file_stem,
            name(identity.user, identity.groups),
            ExtendedKeyUsageOID.CLIENT_AUTH,
        )

    # Service-account tokens are signed with RSA: every client library verifies RS256.
    _write_key(directory / "sa.key", rsa.generate_private_key(public_exponent=65537, key_size=2048))
