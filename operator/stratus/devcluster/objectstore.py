"""The local cluster's S3-compatible object store: SeaweedFS's `weed server` with its S3 gateway,
as one process on free ports, with its data and a generated identity under the state directory.

Without a real node everything listens on loopback. With one, the S3 gateway listens on the
node's bridge address instead, which this machine and the node's pods reach alike, so one
endpoint serves both; the master, volume server and filer behind it stay on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stratus.devcluster import binaries

NAME = "objectstore"
BUCKET = "stratus"
SECRET_NAME = "stratus-s3"  # noqa: S105 - a Secret's name
SECRET_NAMESPACE = "default"  # noqa: S105
# Signed into every request; SeaweedFS accepts any region, most S3 clients need one.
REGION = "us-east-1"
# The gateway's own port is the component's; these are the ports of what runs behind it. Each is
# given explicitly: SeaweedFS would otherwise take its default ports, and gRPC at port + 10000.
INTERNAL_PORTS = (
    "objectstore-grpc",
    "objectstore-master",
    "objectstore-master-grpc",
    "objectstore-volume",
    "objectstore-volume-grpc",
    "objectstore-filer",
    "objectstore-filer-grpc",
)
LOOPBACK = "127.0.0.1"
# Seconds between SIGTERM and SIGKILL when it stops. At SIGTERM SeaweedFS stops its volume server
# before its filer, whose last flush of the change log then retries for 15 s; objects and their
# metadata are written as they arrive, so a kill loses nothing.
STOP_GRACE = 0.0
# Where SeaweedFS puts its Unix sockets, whatever its flags say; a kill leaves them behind.
SOCKET_DIR = Path("/tmp")  # noqa: S108


class ObjectStoreError(RuntimeError):
    pass


@dataclass(frozen=True)
class Layout:
    """Every path of the object store, under the cluster's state directory."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def identities(self) -> Path:
        """SeaweedFS's static S3 identities (its -s3.config)."""
        return self.root / "identities.json"

    @property
    def credentials(self) -> Path:
        """What clients need: the endpoint and the generated keys."""
        return self.root / "credentials.json"


@dataclass(frozen=True)
class Credentials:
    endpoint: str
    access_key_id: str
    secret_access_key: str
    bucket: str = BUCKET

    def env(self) -> dict[str, str]:
        """The standard variables every AWS SDK and CLI read (AWS_ENDPOINT_URL included)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": REGION,
        }


def endpoint(ports: Mapping[str, int], node_ip: str | None) -> str:
    return f"http://{node_ip or LOOPBACK}:{ports[NAME]}"


def prepare(layout: Layout, ports: Mapping[str, int], node_ip: str | None) -> Credentials:
    """Start afresh: empty data, new keys. The identities and credentials are readable by their
    owner only."""
    shutil.rmtree(layout.root, ignore_errors=True)
    layout.data.mkdir(parents=True)
    layout.root.chmod(0o700)
    creds = Credentials(
        endpoint=endpoint(ports, node_ip),
        access_key_id="STRATUS" + secrets.token_hex(7).upper(),
        secret_access_key=secrets.token_urlsafe(30),
    )
    _write_private(layout.identities, identities_config(creds))
    _write_private(layout.credentials, asdict(creds))
    return creds


def identities_config(creds: Credentials) -> dict[str, Any]:
    """One identity with every permission; no anonymous access."""
    return {
        "identities": [
            {
                "name": "stratus",
                "credentials": [
                    {"accessKey": creds.access_key_id, "secretKey": creds.secret_access_key}
                ],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }


def credentials(layout: Layout) -> Credentials | None:
    """The running object store's endpoint and keys; None when none was started here."""
    try:
        raw = json.loads(layout.credentials.read_text())
    except FileNotFoundError:
        return None
    return Credentials(**raw)


def args(weed: Path, layout: Layout, ports: Mapping[str, int], node_ip: str | None) -> list[str]:
    return [
        str(weed),
        # SeaweedFS logs to files under /tmp unless told otherwise; the cluster keeps stderr.
        "-logtostderr=true",
        "server",
        f"-dir={layout.data}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        f"-master.port={ports['objectstore-master']}",
        f"-master.port.grpc={ports['objectstore-master-grpc']}",
        # It would otherwise report usage to telemetry.seaweedfs.com.
        "-master.telemetry=false",
        # A lone master restarted on its own state waits this long to elect itself (default 10s).
        "-master.electionTimeout=1s",
        f"-volume.port={ports['objectstore-volume']}",
        f"-volume.port.grpc={ports['objectstore-volume-grpc']}",
        # Each bucket takes seven volumes (files that grow as written): the default of eight
        # would hold one bucket.
        "-volume.max=100",
        # Stop at once on SIGTERM rather than announce it to a master that stops too.
        "-volume.preStopSeconds=0",
        f"-filer.port={ports['objectstore-filer']}",
        f"-filer.port.grpc={ports['objectstore-filer-grpc']}",
        "-s3",
        f"-s3.port={ports[NAME]}",
        f"-s3.port.grpc={ports['objectstore-grpc']}",
        f"-s3.ip.bind={node_ip or LOOPBACK}",
        f"-s3.config={layout.identities}",
        # The Iceberg and Lance catalogs would take fixed ports.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]


def remove(layout: Layout, args: list[str]) -> None:
    """Delete the data, the keys, and the sockets a killed store left behind."""
    shutil.rmtree(layout.root, ignore_errors=True)
    flag = dict(a.partition("=")[::2] for a in args if a.startswith("-"))
    sockets = [f"{s}-grpc-{flag[f'-{s}.port.grpc']}" for s in ("master", "volume", "filer", "s3")]
    sockets += [f"filer-{flag['-filer.port']}", f"s3-{flag['-s3.port']}"]
    for name in sockets:
        (SOCKET_DIR / f"seaweedfs-{name}.sock").unlink(missing_ok=True)


def health_url(args: list[str], ports: Mapping[str, int]) -> str:
    host = next(a.partition("=")[2] for a in args if a.startswith("-s3.ip.bind="))
    return f"http://{host}:{ports[NAME]}/healthz"


def client(creds: Credentials) -> Any:
    """A boto3 S3 client for `creds`."""
    import boto3  # noqa: PLC0415 - only the local cluster's tools need it
    from botocore.config import Config  # noqa: PLC0415

    return boto3.client(
        "s3",
        endpoint_url=creds.endpoint,
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def create_bucket(creds: Credentials, timeout: float = 30.0) -> None:
    """Create the default bucket. The gateway answers its health probe before its filer and volume
    server are ready, so refusals are retried until `timeout`."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    s3 = client(creds)
    deadline = time.monotonic() + timeout
    while True:
        try:
            s3.create_bucket(Bucket=creds.bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            return
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() > deadline:
                raise ObjectStoreError(
                    f"could not create bucket {creds.bucket} at {creds.endpoint}: {exc}"
                ) from exc
            time.sleep(0.2)
        else:
            return


def secret_manifest(creds: Credentials) -> dict[str, Any]:
    """The credentials as a Secret that pods take their environment from (envFrom)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET_NAME, "namespace": SECRET_NAMESPACE},
        "type": "Opaque",
        "stringData": {**creds.env(), "STRATUS_S3_BUCKET": creds.bucket},
    }


def _write_private(path: Path, content: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(content, out, indent=2)


@contextlib.contextmanager
def standalone(
    root: Path, node_ip: str | None = None, timeout: float = 60.0
) -> Iterator[Credentials]:
    """An object store of its own under `root`, with no cluster, for tests and benchmarks: on free
    ports, its gateway on loopback or on `node_ip` (a real node's bridge, where pods reach it),
    with the default bucket; killed and deleted on exit (its log is kept)."""
    from stratus.devcluster.cluster import free_ports  # noqa: PLC0415 - cluster imports this module

    ports = free_ports((NAME, *INTERNAL_PORTS))
    layout = Layout(root / NAME)
    creds = prepare(layout, ports, node_ip)
    command = args(binaries.locate("weed")["weed"], layout, ports, node_ip)
    log = root / f"{NAME}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=root,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        url = health_url(command, ports)
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ObjectStoreError(f"SeaweedFS did not become healthy at {url}; see {log}")
            time.sleep(0.2)
        create_bucket(creds, timeout=max(deadline - time.monotonic(), 0.0))
        yield creds
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        remove(layout, command)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own http URL
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False
