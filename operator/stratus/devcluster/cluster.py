"""The local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, an
S3-compatible object store and kwok as child processes under one state directory, on free loopback
ports."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stratus.devcluster import (
    binaries,
    kueue,
    metricsserver,
    nodepools,
    objectstore,
    pki,
    realnode,
)

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
STAGES_FILE = Path(__file__).with_name("stages.yaml")
DEFAULT_STATE_DIR = Path(".stratus")
# Order of start; stopped in reverse. kwok, last, runs only when there are pools to simulate.
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    objectstore.NAME,
    "kwok",
)
NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy", "metrics-server")
# Ports that are not a component's own.
EXTRA_PORTS = (
    "etcd-peer",
    "kubelet-healthz",
    "kube-proxy-metrics",
    *objectstore.INTERNAL_PORTS,
    kueue.NAME,
    *kueue.INTERNAL_PORTS,
)


class ClusterError(RuntimeError):
    pass


@dataclass
class Process:
    name: str
    pid: int
    port: int
    log: str
    args: list[str] = field(default_factory=list)


@dataclass
class ClusterState:
    state_dir: str
    kubeconfig: str
    server: str
    kubernetes_version: str
    started_at: float
    processes: list[Process] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> ClusterState:
        raw = json.loads(path.read_text())
        raw["processes"] = [Process(**p) for p in raw["processes"]]
        return cls(**raw)


@dataclass(frozen=True)
class Layout:
    """Every path under a state directory."""

    root: Path

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    def component_kubeconfig(self, identity: pki.Identity) -> Path:
        return self.root / f"{identity.file_stem}.kubeconfig"

    @property
    def node(self) -> realnode.NodeLayout:
        return realnode.NodeLayout(self.root / "node")

    @property
    def object_store(self) -> objectstore.Layout:
        return objectstore.Layout(self.root / "objectstore")

    @property
    def kueue(self) -> kueue.Layout:
        return kueue.Layout(self.root / "kueue")

    def cert(self, stem: str) -> Path:
        return self.pki_dir / f"{stem}.crt"

    def key(self, stem: str) -> Path:
        return self.pki_dir / f"{stem}.key"


def free_port() -> int:
    return free_ports(("port",))["port"]


def free_ports(names: tuple[str, ...]) -> dict[str, int]:
    """A distinct free port for each name: every socket stays bound until all are chosen, as
    a port given back may be handed out again at once (two components once got the same)."""
    with contextlib.ExitStack() as held:
        ports: dict[str, int] = {}
        for name in names:
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports[name] = sock.getsockname()[1]
        return ports


def kubeconfig_for(layout: Layout, server: str, identity: pki.Identity) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "stratus-dev",
                "cluster": {"server": server, "certificate-authority": str(layout.cert("ca"))},
            }
        ],
        "users": [
            {
                "name": identity.user,
                "user": {
                    "client-certificate": str(layout.cert(identity.file_stem)),
                    "client-key": str(layout.key(identity.file_stem)),
                },
            }
        ],
        "contexts": [
            {
                "name": "stratus-dev",
                "context": {"cluster": "stratus-dev", "user": identity.user},
            }
        ],
        "current-context": "stratus-dev",
    }


def component_args(  # noqa: PLR0911 (a command line per component)
    layout: Layout,
    name: str,
    ports: dict[str, int],
    bins: binaries.Binaries,
    kwok_kubeconfig: Path,
    node: tuple[realnode.RealNode, realnode.NodeNetwork] | None = None,
) -> list[str]:
    """The command line of one component. Every one names a path under the state directory, which
    is how `down` recognises its own processes. With a real `node`, the API server also listens
    on the node's bridge (pods reach it through the `kubernetes` Service) and dials the kubelet
    by its InternalIP, so no host name is ever looked up."""
    p = layout.pki_dir
    etcd_url = f"http://127.0.0.1:{ports['etcd']}"
    peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
    if name == "etcd":
        return [
            str(bins["etcd"]),
            "--name=stratus",
            f"--data-dir={layout.etcd_data}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=stratus={peer_url}",
            # A throwaway cluster: durability is not worth the fsyncs.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]
    if name == "kube-apiserver":
        return [
            str(bins["kube-apiserver"]),
            f"--etcd-servers={etcd_url}",
            *_apiserver_network_args(layout, node),
            f"--secure-port={ports['kube-apiserver']}",
            f"--cert-dir={p}",
            f"--tls-cert-file={layout.cert('apiserver')}",
            f"--tls-private-key-file={layout.key('apiserver')}",
            f"--client-ca-file={layout.cert('ca')}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={layout.key('sa')}",
            f"--service-account-signing-key-file={layout.key('sa')}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # As on GKE: a pod that requests nvidia.com/gpu tolerates the GPU nodes' taint.
            "--enable-admission-plugins=ExtendedResourceToleration",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ]
    if name == "kube-controller-manager":
        return [
            str(bins["kube-controller-manager"]),
            f"--kubeconfig={layout.component_kubeconfig(pki.CONTROLLER_MANAGER)}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kube-controller-manager']}",
            f"--cert-dir={p}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={layout.key('sa')}",
            f"--root-ca-file={layout.cert('ca')}",
            f"--cluster-signing-cert-file={layout.cert('ca')}",
            f"--cluster-signing-key-file={layout.key('ca')}",
            "--controllers=*",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--v=1",
        ]
    if name == "kube-scheduler":
        return [
            str(bins["kube-scheduler"]),
            f"--kubeconfig={layout.component_kubeconfig(pki.SCHEDULER)}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kube-scheduler']}",
            f"--cert-dir={p}",
            "--leader-elect=false",
            "--v=1",
        ]
    if name == "kwok":
        return [
            str(bins["kwok"]),
            f"--kubeconfig={kwok_kubeconfig}",
            f"--config={layout.root / 'kwok-stages.yaml'}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector="
            f"{nodepools.KWOK_NODE_ANNOTATION}={nodepools.KWOK_NODE_VALUE}",
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{ports['kwok']}",
        ]
    if name == objectstore.NAME:
        node_ip = node[1].node_ip if node else None
        return objectstore.args(bins["weed"], layout.object_store, ports, node_ip)
    if name == kueue.NAME:
        return kueue_args(layout, kwok_kubeconfig)
    if node is not None and name in NODE_COMPONENTS:
        return _node_args(layout, name, bins, ports, *node)
    raise ValueError(f"unknown component {name}")


def _node_args(
    layout: Layout,
    name: str,
    bins: binaries.Binaries,
    ports: dict[str, int],
    spec: realnode.RealNode,
    net: realnode.NodeNetwork,
) -> list[str]:
    if name == "containerd":
        return realnode.containerd_args(layout.node)
    if name == "kubelet":
        kubeconfig = layout.component_kubeconfig(pki.node_identity(spec.name))
        return realnode.kubelet_args(bins, layout.node, spec, net, kubeconfig)
    if name == "metrics-server":
        return metricsserver.args(
            bins,
            layout.pki_dir,
            layout.component_kubeconfig(pki.METRICS_SERVER),
            net.node_ip,
            ports["metrics-server"],
            f"{realnode.REAL_NODE_LABEL}=true",
        )
    return realnode.kube_proxy_args(bins, layout.node)


def _apiserver_network_args(
    layout: Layout, node: tuple[realnode.RealNode, realnode.NodeNetwork] | None
) -> list[str]:
    if node is None:
        return [
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # Loopback is not a valid Endpoints address, and no pod runs that could dial it.
            "--endpoint-reconciler-type=none",
        ]
    _, net = node
    return [
        # Loopback for clients on this machine, the bridge address for pods.
        "--bind-address=0.0.0.0",
        f"--advertise-address={net.node_ip}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-client-certificate={layout.cert(pki.KUBELET_CLIENT.file_stem)}",
        f"--kubelet-client-key={layout.key(pki.KUBELET_CLIENT.file_stem)}",
        f"--kubelet-certificate-authority={layout.cert('ca')}",
        *metricsserver.apiserver_args(layout.pki_dir),
    ]


def _flag(args: list[str], flag: str) -> str:
    return next(a.partition("=")[2] for a in args if a.startswith(f"{flag}="))


def kueue_args(layout: Layout, fallback_kubeconfig: Path) -> list[str]:
    """Kueue's command line, with its own identity; an attached cluster's kubeconfig (or that of
    a cluster started before Kueue had one) otherwise."""
    kubeconfig = layout.component_kubeconfig(pki.KUEUE)
    if not kubeconfig.exists():
        kubeconfig = fallback_kubeconfig
    return kueue.args(binaries.locate(kueue.NAME)[kueue.NAME], kubeconfig, layout.kueue)


def kueue_ports(ports: dict[str, int]) -> kueue.Ports:
    return kueue.Ports(ports[kueue.NAME], ports["kueue-metrics"], ports["kueue-webhook"])


def _health_url(name: str, ports: dict[str, int], args: list[str]) -> str:  # noqa: PLR0911
    if name == "metrics-server":
        # It listens on the node's bridge alone: probed where its own arguments say.
        return f"https://{_flag(args, '--bind-address')}:{ports[name]}/livez"
    if name == "etcd":
        return f"http://127.0.0.1:{ports['etcd']}/health"
    if name == objectstore.NAME:
        return objectstore.health_url(args, ports)
    if name == kueue.NAME:
        return kueue.health_url(ports[kueue.NAME])
    if name == "kwok":
        return f"http://127.0.0.1:{ports['kwok']}/healthz"
    if name == "kubelet":
        return f"http://127.0.0.1:{ports['kubelet-healthz']}/healthz"
    if name == "kube-proxy":
        return f"http://127.0.0.1:{ports['kube-proxy']}/livez"
    path = "/readyz" if name == "kube-apiserver" else "/healthz"
    return f"https://127.0.0.1:{ports[name]}{path}"


def _ssl_context(layout: Layout) -> ssl.SSLContext:
    # The controller manager and scheduler serve self-signed certificates; the API server's is
    # ours. Health probes present the admin client certificate and check nothing else.
    ctx = ssl.create_default_context(cafile=str(layout.cert("ca")))
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(layout.cert("admin")), str(layout.key("admin")))
    return ctx


def probe(url: str, ctx: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait(
    what: str, check: Callable[[], bool], deadline: float, alive: Callable[[], str | None]
) -> None:
    while True:
        if check():
            return
        dead = alive()
        if dead:
            raise ClusterError(f"{dead} exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _owned(pid: int, root: Path) -> bool:
    """True when `pid` is alive and is one of ours: its command line names our state directory."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(root).encode() in cmdline


def _stop_pid(pid: int, root: Path, grace: float = 10.0) -> None:
    if not _owned(pid, root):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _owned(pid, root) or _is_zombie(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _stop_grace(name: str) -> float:
    return objectstore.STOP_GRACE if name == objectstore.NAME else 10.0


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class LocalCluster:
    """One local control plane under `state_dir`."""

    def __init__(
        self,
        state_dir: Path = DEFAULT_STATE_DIR,
        pools: tuple[nodepools.NodePool, ...] = nodepools.DEFAULT_POOLS,
        extra_apiserver_args: tuple[str, ...] = (),
        attach_to: Path | None = None,
        real_node: realnode.RealNode | None = None,
        with_kueue: bool = False,
    ) -> None:
        """With `attach_to` (a kubeconfig), only kwok and the node pools are added to that
        existing cluster (kind, say). Without pools, no kwok runs: nothing to simulate. With
        `real_node`, a kubelet on this machine joins too (Linux and root only). With
        `with_kueue`, Kueue runs too, last, with queues for the pools (stratus.devcluster.kueue)."""
        self.layout = Layout(state_dir.resolve())
        self.pools = pools
        self.extra_apiserver_args = extra_apiserver_args
        self.attach_to = attach_to.resolve() if attach_to else None
        if real_node is not None and attach_to is not None:
            raise ClusterError("a real node joins only a local control plane, not --attach")
        self.real_node = real_node
        control_plane = () if attach_to else COMPONENTS[:-1]
        self.components: tuple[str, ...] = (
            *control_plane,
            *(("kwok",) if pools else ()),
            *(NODE_COMPONENTS if real_node else ()),
        )
        self.with_kueue = with_kueue
        # Children started by this object; polled directly, since a just-forked child does not
        # show its own command line yet.
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def kubeconfig(self) -> Path:
        return self.attach_to or self.layout.kubeconfig

    def state(self) -> ClusterState | None:
        if not self.layout.state_file.exists():
            return None
        return ClusterState.load(self.layout.state_file)

    def running(self) -> dict[str, bool]:
        state = self.state()
        if state is None:
            return {}
        return {
            p.name: _owned(p.pid, self.layout.root) and not _is_zombie(p.pid)
            for p in state.processes
        }

    def up(  # noqa: PLR0915 (every step of a start, in order)
        self, timeout: float = 120.0, log: Callable[[str], None] = print
    ) -> ClusterState:
        """Start the cluster and return once it is ready; reuse it when it already runs."""
        started = time.monotonic()
        existing = self.state()
        if existing and all(self.running().values()):
            log(f"cluster already running (kubeconfig {existing.kubeconfig})")
            return existing
        self.down(log=lambda _msg: None)
        bins = binaries.locate()
        root = self.layout.root
        for sub in (self.layout.pki_dir, self.layout.etcd_data, self.layout.logs):
            shutil.rmtree(sub, ignore_errors=True)
        self.layout.logs.mkdir(parents=True)
        shutil.copyfile(STAGES_FILE, root / "kwok-stages.yaml")
        ports = free_ports((*COMPONENTS, *NODE_COMPONENTS, *EXTRA_PORTS))
        ports["containerd"] = 0
        try:
            node = self._prepare_real_node(ports) if self.real_node else None
        except Exception:
            self.down(log=lambda _msg: None)
            raise
        store = None
        if self.attach_to is None:
            server = f"https://127.0.0.1:{ports['kube-apiserver']}"
            self._write_credentials(server, node[1] if node else None)
            store = objectstore.prepare(
                self.layout.object_store, ports, node[1].node_ip if node else None
            )
            kwok_kubeconfig = self.layout.component_kubeconfig(pki.KWOK)
            ctx = _ssl_context(self.layout)
        else:
            server = yaml.safe_load(self.attach_to.read_text())["clusters"][0]["cluster"]["server"]
            kwok_kubeconfig = self.attach_to
            ctx = ssl.create_default_context()

        state = ClusterState(
            state_dir=str(root),
            kubeconfig=str(self.kubeconfig),
            server=server,
            kubernetes_version=bins.kubernetes_version,
            started_at=time.time(),
        )
        deadline = time.monotonic() + timeout
        try:
            for name in self.components:
                args = component_args(self.layout, name, ports, bins, kwok_kubeconfig, node)
                if name == "kube-apiserver":
                    args += list(self.extra_apiserver_args)
                if name == "kubelet":
                    self._load_images(log, started)
                state.processes.append(self._spawn(name, args, ports[name]))
                state.save(self.layout.state_file)
                self._wait_healthy(name, ports, args, ctx, deadline)
                log(f"{name} ready ({time.monotonic() - started:.1f}s)")
            self._add_nodes(deadline, log)
            if store is not None:
                self._provision_object_store(store, deadline, log)
            if self.with_kueue:
                self._start_kueue(state, ports, deadline, log, started, queues=True)
        except Exception as exc:
            hint = self._log_tails()
            self.down(log=lambda _msg: None)
            raise ClusterError(f"{exc}\n{hint}") from exc
        elapsed = time.monotonic() - started
        log(f"cluster ready in {elapsed:.1f}s; export KUBECONFIG={self.kubeconfig}")
        return state

    def start_kueue(self, timeout: float = 120.0, log: Callable[[str], None] = print) -> None:
        """Start Kueue beside a running cluster (one started without it); `down` stops it with
        the rest, or `stop_kueue` alone."""
        state = self.state()
        if state is None:
            raise ClusterError("no cluster running")
        ports = {p.name: p.port for p in state.processes}
        ports.update(free_ports((kueue.NAME, *kueue.INTERNAL_PORTS)))
        deadline = time.monotonic() + timeout
        try:
            self._start_kueue(state, ports, deadline, log, time.monotonic())
        except Exception as exc:
            hint = self._log_tails()
            self.stop_kueue()
            raise ClusterError(f"{exc}\n{hint}") from exc

    def stop_kueue(self) -> None:
        state = self.state()
        if state is None:
            return
        mine = [p for p in state.processes if p.name == kueue.NAME]
        self._stop(mine)
        state.processes = [p for p in state.processes if p.name != kueue.NAME]
        state.save(self.layout.state_file)
        shutil.rmtree(self.layout.kueue.root, ignore_errors=True)

    def _kueue_api(self) -> Any:
        from stratus.devcluster import kubeapi  # noqa: PLC0415 - needs the API server up first

        return kubeapi.connect(self.kubeconfig)

    def _start_kueue(
        self,
        state: ClusterState,
        ports: dict[str, int],
        deadline: float,
        log: Callable[[str], None],
        started: float,
        queues: bool = False,
    ) -> None:
        """Kueue's CRDs (it does not start without them), then Kueue itself; with `queues`, the
        queues `stratus dev up --kueue` makes."""
        api = self._kueue_api()
        names = api.create_crds(kueue.crd_files())
        _wait(
            f"{len(names)} Kueue CRDs to be Established",
            lambda: api.crds_established(names),
            deadline,
            self._first_dead,
        )
        ca_dir = self.layout.pki_dir if self.attach_to is None else None
        kueue.prepare(self.layout.kueue, kueue_ports(ports), ca_dir)
        args = kueue_args(self.layout, self.kubeconfig)
        state.processes.append(self._spawn(kueue.NAME, args, ports[kueue.NAME]))
        state.save(self.layout.state_file)
        ctx = _ssl_context(self.layout) if self.attach_to is None else ssl.create_default_context()
        self._wait_healthy(kueue.NAME, ports, args, ctx, deadline)
        version = binaries.versions()["KUEUE_VERSION"]
        log(f"kueue {version} ready ({time.monotonic() - started:.1f}s)")
        if queues:
            api.create_custom(kueue.default_queues(self.pools))
            log(
                f"Kueue queues: ClusterQueue {kueue.CLUSTER_QUEUE} (flavors {kueue.SPOT_FLAVOR}, "
                f"{kueue.ON_DEMAND_FLAVOR}), LocalQueue default/{kueue.LOCAL_QUEUE}"
            )

    def _prepare_real_node(
        self, ports: dict[str, int]
    ) -> tuple[realnode.RealNode, realnode.NodeNetwork]:
        """Check the host, then make the node's bridge and write its configs; the API server
        listens on the bridge, so this comes before any process starts."""
        assert self.real_node is not None
        reason = realnode.unavailable()
        if reason:
            raise ClusterError(f"{reason}; start without it with --no-real-node")
        other = realnode.running_elsewhere()
        if other:
            raise ClusterError(
                f"a real node already runs on this machine (bridge {other}); one runs at a time: "
                "stop the other cluster with `stratus dev down`, or start this one with "
                "--no-real-node"
            )
        node_layout = self.layout.node
        shutil.rmtree(node_layout.root, ignore_errors=True)
        node_layout.root.mkdir(parents=True)
        realnode.images_index()
        net = realnode.choose_network(realnode.host_routes())
        realnode.save_sysctls(node_layout)
        realnode.write_configs(
            node_layout,
            net,
            self.real_node,
            self.layout.pki_dir,
            ports,
            self.layout.component_kubeconfig(pki.KUBE_PROXY),
        )
        realnode.setup_network(net)
        return self.real_node, net

    def _load_images(self, log: Callable[[str], None], started: float) -> None:
        images = realnode.images_index()
        realnode.import_images(self.layout.node, images)
        log(f"{len(images)} images loaded into the real node ({time.monotonic() - started:.1f}s)")

    def _wait_healthy(
        self,
        name: str,
        ports: dict[str, int],
        args: list[str],
        ctx: ssl.SSLContext,
        deadline: float,
    ) -> None:
        if name == "containerd":
            what = f"containerd to answer on {self.layout.node.socket}"
            _wait(
                what,
                lambda: realnode.containerd_ready(self.layout.node),
                deadline,
                self._first_dead,
            )
            return
        url = _health_url(name, ports, args)
        _wait(f"{name} to be healthy ({url})", lambda: probe(url, ctx), deadline, self._first_dead)

    def _write_credentials(self, server: str, net: realnode.NodeNetwork | None = None) -> None:
        node = self.real_node.name if self.real_node and net else None
        pki.write_pki(self.layout.pki_dir, SERVICE_IP, node, net.node_ip if net else None)
        self.layout.kubeconfig.write_text(
            yaml.safe_dump(kubeconfig_for(self.layout, server, pki.ADMIN))
        )
        identities: tuple[pki.Identity, ...] = pki.CLIENT_IDENTITIES
        if node:
            identities += (*pki.NODE_IDENTITIES, pki.node_identity(node))
        for identity in identities:
            self.layout.component_kubeconfig(identity).write_text(
                yaml.safe_dump(kubeconfig_for(self.layout, server, identity))
            )

    def _spawn(self, name: str, args: list[str], port: int) -> Process:
        log_path = self.layout.logs / f"{name}.log"
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.layout.root,
            )
        self._children[name] = proc
        return Process(name=name, pid=proc.pid, port=port, log=str(log_path), args=args)

    def _first_dead(self) -> str | None:
        for name, proc in self._children.items():
            if proc.poll() is not None:
                return name
        return None

    def _log_tails(self, lines: int = 15) -> str:
        tails = []
        for log_path in sorted(self.layout.logs.glob("*.log")):
            text = log_path.read_text(errors="replace").splitlines()[-lines:]
            tails.append(f"--- {log_path} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(tails)

    def _add_nodes(self, deadline: float, log: Callable[[str], None]) -> None:
        from stratus.devcluster import kubeapi  # noqa: PLC0415 - needs the API server up first

        api = kubeapi.connect(self.kubeconfig)
        # An attached cluster (kind, say) has real nodes of its own.
        beside_real = self.real_node is not None or self.attach_to is not None
        manifests = nodepools.node_manifests(self.pools, beside_real=beside_real)
        for manifest in manifests:
            api.create_node(manifest)
        names = {m["metadata"]["name"] for m in manifests}
        if self.real_node:
            names.add(self.real_node.name)
        _wait(
            f"{len(names)} nodes to be Ready",
            lambda: api.ready_nodes() >= names,
            deadline,
            self._first_dead,
        )
        if self.real_node and self.real_node.gpus:
            api.patch_node_status(self.real_node.name, self.real_node.status_patch())
        if self.real_node:
            api.apply_all(self._metrics_api())
        api.apply_all(nodepools.simulated_volumes(self.pools))
        # Pods need their namespace's default ServiceAccount, which the controller manager makes.
        _wait(
            "the default ServiceAccount",
            lambda: api.service_account_exists("default", "default"),
            deadline,
            self._first_dead,
        )
        described = [
            f"{p.name} x{p.count}" + (f" ({p.gpus} GPUs each)" if p.gpus else "")
            for p in self.pools
        ]
        if self.real_node:
            described.append(f"{self.real_node.name} (real kubelet, {self.real_node.gpus} GPUs)")
        log(f"{len(names)} nodes Ready: " + ", ".join(described))

    def _provision_object_store(
        self, store: objectstore.Credentials, deadline: float, log: Callable[[str], None]
    ) -> None:
        from stratus.devcluster import kubeapi  # noqa: PLC0415 - needs the API server up first

        objectstore.create_bucket(store, timeout=max(deadline - time.monotonic(), 0.0))
        kubeapi.connect(self.kubeconfig).apply_all([objectstore.secret_manifest(store)])
        log(
            f"object store at {store.endpoint}: bucket {store.bucket}, credentials in Secret "
            f"{objectstore.SECRET_NAMESPACE}/{objectstore.SECRET_NAME} and `stratus dev env`"
        )

    def _metrics_api(self) -> list[dict[str, Any]]:
        state = self.state()
        assert state is not None
        (server,) = (p for p in state.processes if p.name == "metrics-server")
        host = _flag(server.args, "--bind-address")
        return metricsserver.manifests(host, server.port, self.layout.cert("ca").read_bytes())

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Stop one component and start it again on the same port (a chaos test's API server
        restart, say); returns once it is healthy again."""
        state = self.state()
        if state is None:
            raise ClusterError("no cluster running")
        index = next(i for i, p in enumerate(state.processes) if p.name == name)
        old = state.processes[index]
        _stop_pid(old.pid, self.layout.root, _stop_grace(name))
        child = self._children.pop(name, None)
        if child is not None:
            child.wait()
        state.processes[index] = self._spawn(name, old.args, old.port)
        state.save(self.layout.state_file)
        ports = {p.name: p.port for p in state.processes}
        ctx = _ssl_context(self.layout) if self.attach_to is None else ssl.create_default_context()
        url = _health_url(name, ports, old.args)
        _wait(
            f"{name} to be healthy again ({url})",
            lambda: probe(url, ctx),
            time.monotonic() + timeout,
            self._first_dead,
        )

    def _stop(self, processes: list[Process]) -> None:
        for proc in reversed(processes):
            _stop_pid(proc.pid, self.layout.root, _stop_grace(proc.name))
            child = self._children.pop(proc.name, None)
            if child is not None:
                child.wait()

    def down(self, log: Callable[[str], None] = print) -> None:
        """Stop every process this cluster started; the state directory keeps only its logs. An
        attached cluster also loses the simulated nodes that were added to it."""
        state = self.state()
        if state is None:
            if self.layout.node.root.exists():
                realnode.teardown(self.layout.node, lambda: None, log)
            log("no cluster running")
            return
        if self.attach_to is not None:
            from stratus.devcluster import kubeapi  # noqa: PLC0415

            kubeapi.connect(self.attach_to).delete_nodes(
                [m["metadata"]["name"] for m in nodepools.node_manifests(self.pools)]
            )
        node_procs = [p for p in state.processes if p.name in NODE_COMPONENTS]
        if node_procs or self.layout.node.root.exists():
            realnode.teardown(self.layout.node, lambda: self._stop(node_procs), log)
        self._stop([p for p in state.processes if p.name not in NODE_COMPONENTS])
        self.layout.state_file.unlink(missing_ok=True)
        shutil.rmtree(self.layout.etcd_data, ignore_errors=True)
        shutil.rmtree(self.layout.kueue.root, ignore_errors=True)
        for proc in state.processes:
            if proc.name == objectstore.NAME:
                objectstore.remove(self.layout.object_store, proc.args)
        log(f"stopped {len(state.processes)} processes")
