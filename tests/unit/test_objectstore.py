"""The local cluster's object store: its command line and files, and the built SeaweedFS itself
serving S3 on loopback (one process, no Kubernetes)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from stratus.devcluster import binaries, cluster, objectstore, realnode

NET = realnode.NodeNetwork("stratusbr1", ipaddress.IPv4Network("10.244.1.0/24"))
NAMES = (*cluster.COMPONENTS, *cluster.NODE_COMPONENTS, *cluster.EXTRA_PORTS)


def fake_bins() -> binaries.Binaries:
    return binaries.Binaries(
        {n: Path(f"/bin/{n}") for _, (_, names) in binaries.COMPONENTS.items() for n in names}
    )


def ports() -> dict[str, int]:
    return {name: 20000 + i for i, name in enumerate(NAMES)}


def flags(args: list[str]) -> dict[str, str]:
    return {a.partition("=")[0]: a.partition("=")[2] for a in args if a.startswith("-")}


def test_every_port_is_given_and_all_of_it_stays_on_loopback(tmp_path: Path) -> None:
    layout = cluster.Layout(tmp_path)
    given = ports()
    args = cluster.component_args(layout, "objectstore", given, fake_bins(), tmp_path)
    assert args[:3] == ["/bin/weed", "-logtostderr=true", "server"]
    f = flags(args)
    # SeaweedFS would otherwise pick its defaults (9333, 8888, 8333, ...) and derive gRPC ports.
    for flag in (
        "-master.port",
        "-master.port.grpc",
        "-volume.port",
        "-volume.port.grpc",
        "-filer.port",
        "-filer.port.grpc",
        "-s3.port",
        "-s3.port.grpc",
    ):
        assert f[flag] in {str(p) for p in given.values()}, flag
    used = [int(f[k]) for k in f if k.endswith(("port", "port.grpc"))]
    assert len(used) == len(set(used)) == 8
    assert f["-s3.port"] == str(given["objectstore"])
    assert (f["-s3.port.iceberg"], f["-s3.port.lance"]) == ("0", "0")
    assert f["-ip"] == f["-ip.bind"] == f["-s3.ip.bind"] == "127.0.0.1"
    assert all("0.0.0.0" not in a for a in args)  # noqa: S104
    assert f["-master.telemetry"] == "false"
    assert f["-dir"] == str(tmp_path / "objectstore" / "data")
    assert f["-s3.config"] == str(layout.object_store.identities)
    url = cluster._health_url("objectstore", given, args)
    assert url == f"http://127.0.0.1:{given['objectstore']}/healthz"


def test_with_a_real_node_the_gateway_alone_listens_on_its_bridge(tmp_path: Path) -> None:
    layout = cluster.Layout(tmp_path)
    given = ports()
    node = (realnode.RealNode(), NET)
    args = cluster.component_args(layout, "objectstore", given, fake_bins(), tmp_path, node)
    f = flags(args)
    assert f["-s3.ip.bind"] == NET.node_ip
    assert f["-ip.bind"] == "127.0.0.1"  # master, volume server and filer: not for pods
    assert cluster._health_url("objectstore", given, args) == (
        f"http://{NET.node_ip}:{given['objectstore']}/healthz"
    )
    store = objectstore.prepare(layout.object_store, given, NET.node_ip)
    assert store.endpoint == f"http://{NET.node_ip}:{given['objectstore']}"


def test_the_store_starts_before_kwok_and_after_the_api_server() -> None:
    order = cluster.COMPONENTS
    assert order.index("kube-apiserver") < order.index("objectstore") < order.index("kwok")
    assert order[-1] == "kwok"  # the local cluster drops the last one when there are no pools
    assert set(objectstore.INTERNAL_PORTS) <= set(cluster.EXTRA_PORTS)
    assert "objectstore" in cluster.LocalCluster(Path("/nonexistent"), pools=()).components
    attached = cluster.LocalCluster(Path("/nonexistent"), attach_to=Path("/k"))
    assert "objectstore" not in attached.components


def test_prepare_starts_afresh_with_new_private_keys(tmp_path: Path) -> None:
    layout = objectstore.Layout(tmp_path / "objectstore")
    assert objectstore.credentials(layout) is None
    first = objectstore.prepare(layout, ports(), None)
    (layout.data / "leftover").write_text("x")
    assert objectstore.credentials(layout) == first
    assert first.endpoint == f"http://127.0.0.1:{ports()['objectstore']}"
    for path in (layout.identities, layout.credentials):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert layout.root.stat().st_mode & 0o777 == 0o700
    (identity,) = objectstore.identities_config(first)["identities"]
    assert identity["credentials"] == [
        {"accessKey": first.access_key_id, "secretKey": first.secret_access_key}
    ]
    assert layout.identities.read_text().count(first.secret_access_key) == 1
    second = objectstore.prepare(layout, ports(), None)
    assert second.access_key_id != first.access_key_id
    assert second.secret_access_key != first.secret_access_key
    assert len(second.secret_access_key) >= 40
    assert list(layout.data.iterdir()) == []


def test_the_secret_carries_what_an_s3_client_reads(tmp_path: Path) -> None:
    store = objectstore.prepare(objectstore.Layout(tmp_path), ports(), NET.node_ip)
    secret = objectstore.secret_manifest(store)
    assert secret["metadata"] == {"name": "stratus-s3", "namespace": "default"}
    assert secret["stringData"] == {
        "AWS_ENDPOINT_URL": store.endpoint,
        "AWS_ACCESS_KEY_ID": store.access_key_id,
        "AWS_SECRET_ACCESS_KEY": store.secret_access_key,
        "AWS_REGION": "us-east-1",
        "STRATUS_S3_BUCKET": "stratus",
    }


def test_down_deletes_the_store_and_the_sockets_a_kill_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(objectstore, "SOCKET_DIR", tmp_path)
    local = cluster.LocalCluster(tmp_path / "state", pools=())
    given = ports()
    layout = local.layout.object_store
    objectstore.prepare(layout, given, None)
    args = objectstore.args(Path("/bin/weed"), layout, given, None)
    sockets = [
        f"master-grpc-{given['objectstore-master-grpc']}",
        f"volume-grpc-{given['objectstore-volume-grpc']}",
        f"filer-grpc-{given['objectstore-filer-grpc']}",
        f"s3-grpc-{given['objectstore-grpc']}",
        f"filer-{given['objectstore-filer']}",
        f"s3-{given['objectstore']}",
    ]
    for name in (*sockets, "master-grpc-1"):
        (tmp_path / f"seaweedfs-{name}.sock").touch()
    gone = 2**22 + 1  # above any pid_max: nothing to stop
    process = cluster.Process("objectstore", gone, given["objectstore"], "log", args)
    cluster.ClusterState(str(tmp_path), "kubeconfig", "server", "v1", 0.0, [process]).save(
        local.layout.state_file
    )
    local.down(log=lambda _msg: None)
    assert not layout.root.exists()
    assert sorted(p.name for p in tmp_path.glob("seaweedfs-*")) == ["seaweedfs-master-grpc-1.sock"]


def test_dev_env_exports_the_endpoint_and_keys_while_a_store_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from stratus import cli  # noqa: PLC0415

    monkeypatch.setattr(binaries, "locate", fake_bins)
    run = ["dev", "env", "--state-dir", str(tmp_path)]
    assert cli.main(run) == 0
    assert "AWS_" not in capsys.readouterr().out
    store = objectstore.prepare(cluster.Layout(tmp_path).object_store, ports(), None)
    assert cli.main(run) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"export STRATUS_S3_ENDPOINT={store.endpoint}" in lines
    assert f"export AWS_ENDPOINT_URL={store.endpoint}" in lines
    assert f"export AWS_ACCESS_KEY_ID={store.access_key_id}" in lines
    assert f"export AWS_SECRET_ACCESS_KEY={store.secret_access_key}" in lines
    assert "export STRATUS_S3_BUCKET=stratus" in lines


def start(args: list[str], root: Path) -> subprocess.Popen[bytes]:
    with (root / "weed.log").open("ab") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, cwd=root, start_new_session=True
        )


def wait_healthy(url: str, proc: subprocess.Popen[bytes], root: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        tail = (root / "weed.log").read_text(errors="replace")[-3000:]
        assert proc.poll() is None, tail
        assert time.monotonic() < deadline, tail
        time.sleep(0.2)


def test_a_missing_weed_alone_names_the_build_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATUS_CACHE", str(tmp_path))
    with pytest.raises(binaries.MissingBinariesError, match="make binaries") as missing:
        binaries.locate("weed")
    assert "/seaweedfs-v0.0.0-" in str(missing.value)
    assert "kube-apiserver" not in str(missing.value)


@contextlib.contextmanager
def killed_at_exit(procs: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_the_built_seaweedfs_serves_s3_with_the_generated_keys_alone(tmp_path: Path) -> None:
    # Fails, naming the build command, when `weed` is not built: CI builds it before the tests.
    weed = binaries.locate("weed")["weed"]
    given = {name: cluster.free_port() for name in (objectstore.NAME, *objectstore.INTERNAL_PORTS)}
    layout = objectstore.Layout(tmp_path / "objectstore")
    store = objectstore.prepare(layout, given, None)
    args = objectstore.args(weed, layout, given, None)
    url = objectstore.health_url(args, given)
    procs = [start(args, tmp_path)]
    with killed_at_exit(procs):
        wait_healthy(url, procs[0], tmp_path)
        objectstore.create_bucket(store, timeout=60)
        objectstore.create_bucket(store, timeout=5)  # there already: nothing to do
        s3 = objectstore.client(store)
        body = os.urandom(9 * 1024 * 1024)  # more than one filer chunk (4 MiB)
        s3.put_object(Bucket="stratus", Key="ckpt/step-1/model.bin", Body=body)
        listed = s3.list_objects_v2(Bucket="stratus", Prefix="ckpt/")["Contents"]
        assert [(o["Key"], o["Size"]) for o in listed] == [("ckpt/step-1/model.bin", len(body))]
        s3.create_bucket(Bucket="second")  # buckets beyond the first get volumes too
        s3.put_object(Bucket="second", Key="k", Body=b"v")

        forged = objectstore.Credentials(store.endpoint, store.access_key_id, "not-the-secret")
        with pytest.raises(ClientError) as refused:
            objectstore.client(forged).get_object(Bucket="stratus", Key="ckpt/step-1/model.bin")
        assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

        # Stopped as `down` and `restart` stop it: at once, and the objects survive.
        sockets = sorted(objectstore.SOCKET_DIR.glob("seaweedfs-*.sock"))
        started = time.monotonic()
        cluster._stop_pid(procs[0].pid, tmp_path, objectstore.STOP_GRACE)
        procs[0].wait(timeout=5)
        assert time.monotonic() - started < 5
        procs.append(start(args, tmp_path))
        wait_healthy(url, procs[1], tmp_path)
        got = s3.get_object(Bucket="stratus", Key="ckpt/step-1/model.bin")["Body"].read()
        assert got == body
        assert s3.get_object(Bucket="second", Key="k")["Body"].read() == b"v"

    mine = [str(p) for p in given.values()]
    left = [s for s in sockets if any(s.name.endswith(f"-{port}.sock") for port in mine)]
    assert len(left) == 6, left  # master, volume, filer and S3 gateway gRPC; filer and S3 HTTP
    objectstore.remove(layout, args)
    assert not layout.root.exists()
    assert not [s for s in left if s.exists()]


def test_a_standalone_store_serves_the_bucket_and_leaves_nothing(tmp_path: Path) -> None:
    with objectstore.standalone(tmp_path) as store:
        s3 = objectstore.client(store)
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["stratus"]
        assert store.endpoint.startswith("http://127.0.0.1:")
    assert not (tmp_path / "objectstore").exists()
    assert (tmp_path / "objectstore.log").stat().st_size > 0
    with pytest.raises(EndpointConnectionError):
        s3.list_buckets()
