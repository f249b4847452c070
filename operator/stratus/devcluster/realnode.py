"""The real node: containerd, the kubelet and kube-proxy on this machine, joined to the local
control plane, so that our own images run in real containers next to the kwok pools.

Pure builders make every config (containerd, CNI, kubelet, kube-proxy); the few functions at the
end touch the host (a bridge for the node's pod network, images into containerd, teardown). All
state lives under `<state dir>/node`; teardown removes every process, mount, cgroup, link,
iptables chain and sysctl change the node made."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stratus.devcluster import binaries, nodepools

Manifest = dict[str, Any]

PAUSE_IMAGE = "localhost/stratus/pause:1"
# The pod networks tried for the node, in order; the first that overlaps no route is taken.
POD_NETWORKS = tuple(ipaddress.IPv4Network(f"10.244.{i}.0/24") for i in range(1, 255))
REAL_NODE_LABEL = "stratus.dev/real-node"
SOCKETS_DIR = Path("/run/stratus")
CNI_BIN_DIR = Path("/usr/lib/cni")
# Host tools the node needs, with the Debian package that ships each (hack/install-deps.sh).
HOST_TOOLS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "ip": "iproute2",
    "nsenter": "util-linux",
}
# Sysctls the kubelet, kube-proxy and the CNI bridge change; teardown writes back what was there.
TOUCHED_SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
# Chains that the kubelet, kube-proxy and the CNI portmap plugin create.
CHAIN_PREFIXES = ("KUBE-", "CNI-")


class RealNodeError(RuntimeError):
    pass


class RealNode(BaseModel):
    """The real node's role: it can play a GPU pool (labels, taints and `nvidia.com/gpu` capacity
    advertised through the node's status); its containers get no real GPU."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(default="real-0", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    gpus: int = Field(default=2, ge=0, le=64)
    gpu_product: str = Field(default="NVIDIA-L4", alias="gpuProduct")
    capacity_type: Literal["on-demand", "spot"] = Field(default="spot", alias="capacityType")
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[nodepools.Taint] = Field(default_factory=list)

    def node_labels(self) -> dict[str, str]:
        labels = {
            nodepools.POOL_LABEL: "real",
            nodepools.CAPACITY_TYPE_LABEL: self.capacity_type,
            REAL_NODE_LABEL: "true",
            **self.labels,
        }
        if self.gpus:
            labels[nodepools.GPU_PRODUCT_LABEL] = self.gpu_product
            labels["nvidia.com/gpu.count"] = str(self.gpus)
            labels["nvidia.com/gpu.present"] = "true"
        return labels

    def status_patch(self) -> Manifest:
        """The extended resources to advertise, the documented way: a patch of node status."""
        if not self.gpus:
            return {}
        amount = str(self.gpus)
        return {
            "status": {
                "capacity": {nodepools.GPU_RESOURCE: amount},
                "allocatable": {nodepools.GPU_RESOURCE: amount},
            }
        }


@dataclass(frozen=True)
class NodeNetwork:
    """The node's own pod network: a bridge whose address is the node IP and the pods' gateway."""

    bridge: str
    subnet: ipaddress.IPv4Network

    @property
    def node_ip(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def prefix(self) -> int:
        return self.subnet.prefixlen


def choose_network(taken: Iterable[ipaddress.IPv4Network]) -> NodeNetwork:
    """The first candidate pod network that overlaps none of `taken` (the host's routes)."""
    used = list(taken)
    for subnet in POD_NETWORKS:
        if not any(subnet.overlaps(other) for other in used):
            return NodeNetwork(bridge=f"stratusbr{subnet.network_address.packed[2]}", subnet=subnet)
    raise RealNodeError("no free pod network in 10.244.0.0/16 for the real node")


@dataclass(frozen=True)
class NodeLayout:
    """Every path of the real node, under `<state dir>/node`."""

    root: Path

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def socket_dir(self) -> Path:
        """containerd's sockets, outside the state dir: a unix socket's path must fit in 104
        bytes (with containerd's ".ttrpc" suffix), and a state dir's path can be long."""
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        return SOCKETS_DIR / digest

    @property
    def socket(self) -> Path:
        return self.socket_dir / "containerd.sock"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy.yaml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def sysctls_file(self) -> Path:
        return self.root / "sysctls.json"

    @property
    def network_file(self) -> Path:
        return self.root / "network.json"


def containerd_config(layout: NodeLayout) -> str:
    """containerd 1.6's config: everything under the state dir, cgroupfs, the local pause image,
    and network namespaces kept under the state dir so teardown finds them."""
    return f"""version = 2
root = "{layout.containerd_root}"
state = "{layout.containerd_state}"
oom_score = 0

[grpc]
  address = "{layout.socket}"

[ttrpc]
  address = "{layout.socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{layout.root / "containerd" / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{layout.cni_conf_dir}"
    max_conf_num = 1
"""


def cni_conflist(net: NodeNetwork, layout: NodeLayout) -> Manifest:
    """bridge + host-local IPAM + portmap. No IP masquerade: pods talk only to the node and to
    each other, never past the host."""
    return {
        "cniVersion": "0.4.0",
        "name": "stratus",
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(layout.cni_ipam_dir),
                    "ranges": [[{"subnet": str(net.subnet), "gateway": net.node_ip}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(
    layout: NodeLayout, net: NodeNetwork, node: RealNode, pki_dir: Path, ports: dict[str, int]
) -> Manifest:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": net.node_ip,
        "port": ports["kubelet"],
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports["kubelet-healthz"],
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki_dir / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki_dir / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki_dir / "kubelet-serving.key"),
        "containerRuntimeEndpoint": f"unix://{layout.socket}",
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "failCgroupV1": False,
        "oomScoreAdj": 0,
        "maxOpenFiles": 20000,
        "podCIDR": str(net.subnet),
        "registerWithTaints": [t.model_dump() for t in node.taints],
        # A small disk must not evict our pods, and images are never pulled: keep them all.
        "evictionHard": {
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "memory.available": "100Mi",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "nodeStatusUpdateFrequency": "4s",
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "5s",
        "resolvConf": "",
        "enableServer": True,
    }


def kube_proxy_config(
    net: NodeNetwork, node: RealNode, kubeconfig: Path, ports: dict[str, int]
) -> Manifest:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "hostnameOverride": node.name,
        "bindAddress": net.node_ip,
        "healthzBindAddress": f"127.0.0.1:{ports['kube-proxy']}",
        "metricsBindAddress": f"127.0.0.1:{ports['kube-proxy-metrics']}",
        "clusterCIDR": str(net.subnet),
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        # Every Service hop is masqueraded, so pod -> Service -> pod on one bridge works without
        # br_netfilter.
        "iptables": {"masqueradeAll": True, "localhostNodePorts": False, "syncPeriod": "5s"},
        # Leave the host's conntrack table settings alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def kubelet_args(
    bins: binaries.Binaries, layout: NodeLayout, node: RealNode, net: NodeNetwork, kubeconfig: Path
) -> list[str]:
    labels = ",".join(f"{k}={v}" for k, v in sorted(node.node_labels().items()))
    return [
        str(bins["kubelet"]),
        f"--config={layout.kubelet_config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={layout.kubelet_dir}",
        f"--hostname-override={node.name}",
        f"--node-ip={net.node_ip}",
        f"--node-labels={labels}",
        "--v=1",
    ]


def kube_proxy_args(bins: binaries.Binaries, layout: NodeLayout) -> list[str]:
    return [str(bins["kube-proxy"]), f"--config={layout.kube_proxy_config}", "--v=1"]


def containerd_args(layout: NodeLayout) -> list[str]:
    return [_tool("containerd"), f"--config={layout.containerd_config}"]


def write_configs(
    layout: NodeLayout,
    net: NodeNetwork,
    node: RealNode,
    pki_dir: Path,
    ports: dict[str, int],
    kube_proxy_kubeconfig: Path,
) -> None:
    import yaml  # noqa: PLC0415 - only the dev cluster needs it

    for folder in (layout.cni_conf_dir, layout.cni_ipam_dir, layout.kubelet_dir):
        folder.mkdir(parents=True, exist_ok=True)
    layout.containerd_config.write_text(containerd_config(layout))
    (layout.cni_conf_dir / "10-stratus.conflist").write_text(
        json.dumps(cni_conflist(net, layout), indent=2)
    )
    layout.kubelet_config.write_text(
        yaml.safe_dump(kubelet_config(layout, net, node, pki_dir, ports))
    )
    layout.kube_proxy_config.write_text(
        yaml.safe_dump(kube_proxy_config(net, node, kube_proxy_kubeconfig, ports))
    )
    layout.network_file.write_text(json.dumps({"bridge": net.bridge, "subnet": str(net.subnet)}))


# --- What touches the host -------------------------------------------------------------------


def unavailable() -> str | None:
    """Why a real node cannot run here, in one line; None when it can."""
    if platform.system() != "Linux":
        return "a real node needs Linux"
    if os.geteuid() != 0:
        return "a real node needs root (containerd, cgroups, network links)"
    missing = {pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None}
    if not (CNI_BIN_DIR / "bridge").exists():
        missing.add("containernetworking-plugins")
    if missing:
        return f"a real node needs the Debian packages {', '.join(sorted(missing))} (make deps)"
    return None


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RealNodeError(f"{name} is not installed (Debian package {HOST_TOOLS[name]})")
    return path


def _run(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RealNodeError(f"{' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done


def host_routes() -> list[ipaddress.IPv4Network]:
    out = _run(_tool("ip"), "-o", "-4", "route", "show", "table", "all").stdout
    routes = []
    for line in out.splitlines():
        dest = line.split()[0]
        if dest in ("default", "broadcast", "local", "unreachable"):
            dest = line.split()[1] if dest != "default" else "0.0.0.0/0"
        if dest == "0.0.0.0/0":
            continue
        with contextlib.suppress(ValueError):
            routes.append(ipaddress.IPv4Network(dest, strict=False))
    return routes


def read_network(layout: NodeLayout) -> NodeNetwork | None:
    if not layout.network_file.exists():
        return None
    raw = json.loads(layout.network_file.read_text())
    return NodeNetwork(bridge=raw["bridge"], subnet=ipaddress.IPv4Network(raw["subnet"]))


def running_elsewhere() -> str | None:
    """The bridge of a real node that already runs on this machine, if any: kube-proxy's and
    the kubelet's iptables chains have fixed names, so two would undo each other's rules."""
    return next((name for name in _links() if name.startswith("stratusbr")), None)


def _links(*selector: str) -> list[str]:
    """Names of the host's network links (`selector`: e.g. "master", BRIDGE)."""
    out = _run(_tool("ip"), "-o", "link", "show", *selector, check=False).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def setup_network(net: NodeNetwork) -> None:
    """The bridge with the node IP; the CNI bridge plugin attaches pods to it."""
    ip = _tool("ip")
    _run(ip, "link", "add", "name", net.bridge, "type", "bridge")
    _run(ip, "addr", "add", f"{net.node_ip}/{net.prefix}", "dev", net.bridge)
    _run(ip, "link", "set", net.bridge, "up")


def save_sysctls(layout: NodeLayout) -> None:
    if layout.sysctls_file.exists():
        return
    layout.sysctls_file.write_text(json.dumps(_sysctls()))


def _sysctls() -> dict[str, str]:
    values = {}
    for key in TOUCHED_SYSCTLS:
        with contextlib.suppress(OSError):
            values[key] = (Path("/proc/sys") / key).read_text().strip()
    return values


def images_index() -> list[dict[str, str]]:
    """The project's images that `make images` built (hack/build-images.sh writes the index)."""
    index = binaries.cache_dir() / "images" / "index.json"
    if not index.exists():
        raise RealNodeError(
            f"the real node needs the project's images ({index} is missing): run `make images`"
        )
    images: list[dict[str, str]] = json.loads(index.read_text())
    if not any(image["tag"] == PAUSE_IMAGE for image in images):
        raise RealNodeError(f"{PAUSE_IMAGE} is not in {index}: run `make images`")
    return images


def import_images(layout: NodeLayout, images: list[dict[str, str]]) -> None:
    ctr = _tool("ctr")
    for image in images:
        _run(
            ctr,
            f"--address={layout.socket}",
            "--namespace=k8s.io",
            "images",
            "import",
            "--snapshotter=overlayfs",
            image["archive"],
            timeout=300,
        )


def containerd_ready(layout: NodeLayout) -> bool:
    if not layout.socket.exists():
        return False
    done = _run(_tool("ctr"), f"--address={layout.socket}", "version", check=False, timeout=10)
    return done.returncode == 0


# --- Teardown ---------------------------------------------------------------------------------


def _pids_naming(*paths: Path) -> list[int]:
    """Processes whose command line names one of `paths`: containerd's shims outlive
    containerd, and name its socket."""
    pids = []
    markers = [str(path).encode() for path in paths]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes()
            if any(marker in cmdline for marker in markers):
                pids.append(int(entry.name))
    return pids


def _cgroup_dirs() -> list[Path]:
    """Every `kubepods*` cgroup the kubelet made, in each v1 hierarchy (or the v2 tree)."""
    base = Path("/sys/fs/cgroup")
    found: list[Path] = []
    hierarchies = [base] + [d for d in base.iterdir() if d.is_dir()] if base.exists() else []
    for hierarchy in hierarchies:
        found += [d for d in hierarchy.glob("kubepods*") if d.is_dir()]
    return found


def _kill_cgroup_tree(top: Path) -> None:
    for procs in top.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)


def _remove_cgroup_tree(top: Path) -> None:
    for folder in sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
        with contextlib.suppress(OSError):
            folder.rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first."""
    points = []
    prefix = str(root)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: -p.count("/"))


def _unmount_all(root: Path) -> None:
    import ctypes  # noqa: PLC0415

    libc = ctypes.CDLL(None, use_errno=True)
    mnt_detach = 2
    for _ in range(5):
        points = mounts_under(root)
        if not points:
            return
        for point in points:
            libc.umount2(point.encode(), mnt_detach)


def chains(table_dump: str) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """From `iptables-save` output: our chains per table, and the rules (table, rule spec) in
    other chains that jump to them."""
    ours: dict[str, list[str]] = {}
    jumps: list[tuple[str, str]] = []
    table = ""
    for line in table_dump.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            name = line[1:].split()[0]
            if name.startswith(CHAIN_PREFIXES):
                ours.setdefault(table, []).append(name)
        elif line.startswith("-A "):
            chain = line.split()[1]
            target = line.split(" -j ", 1)[1].split()[0] if " -j " in line else ""
            if not chain.startswith(CHAIN_PREFIXES) and target.startswith(CHAIN_PREFIXES):
                jumps.append((table, line[3:]))
    return ours, jumps


def _saved_chains() -> Iterator[tuple[str, dict[str, list[str]], list[tuple[str, str]]]]:
    """For iptables and ip6tables (where installed): the family, our chains, the jumps to them."""
    for family in ("iptables", "ip6tables"):
        save = shutil.which(f"{family}-save")
        if save is not None:
            yield family, *chains(_run(save, check=False).stdout)


def _remove_chains() -> None:
    for family, ours, jumps in _saved_chains():
        for table, rule in jumps:
            _run(family, "-t", table, "-D", *shlex.split(rule), check=False)
        for table, names in ours.items():
            for name in names:
                _run(family, "-t", table, "-F", name, check=False)
            for name in names:
                _run(family, "-t", table, "-X", name, check=False)


def _restore_sysctls(layout: NodeLayout) -> None:
    if not layout.sysctls_file.exists():
        return
    for key, value in json.loads(layout.sysctls_file.read_text()).items():
        with contextlib.suppress(OSError):
            (Path("/proc/sys") / key).write_text(value)
    layout.sysctls_file.unlink()


def teardown(
    layout: NodeLayout,
    stop: Callable[[], None],
    log: Callable[[str], None] = print,
) -> None:
    """After `stop` has ended kube-proxy, the kubelet and containerd: kill what they left (shims,
    containers), then remove mounts, cgroups, the bridge, iptables chains and sysctl changes."""
    stop()
    for pid in _pids_naming(layout.root, layout.socket_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    net = read_network(layout)
    other = running_elsewhere()
    # cgroups, chains and sysctls are the machine's, not the state dir's: leave them to a real
    # node that still runs (one whose bridge is not ours).
    machine_wide = other is None or (net is not None and other == net.bridge)
    if machine_wide:
        for top in _cgroup_dirs():
            _kill_cgroup_tree(top)
        time.sleep(0.2)
        for top in _cgroup_dirs():
            _remove_cgroup_tree(top)
    _unmount_all(layout.root)
    if net is not None:
        for link in _links("master", net.bridge):
            _run(_tool("ip"), "link", "delete", link, check=False)
        _run(_tool("ip"), "link", "delete", net.bridge, check=False)
    if machine_wide:
        _remove_chains()
        _restore_sysctls(layout)
    else:
        log(f"real node: another one runs (bridge {other}); its cgroups and chains are left")
    left = mounts_under(layout.root) + ([str(d) for d in _cgroup_dirs()] if machine_wide else [])
    if left:
        log(f"real node: could not remove {', '.join(left)}")
    # containerd's snapshots are plain files once unmounted; the images come back from the cache.
    shutil.rmtree(layout.root, ignore_errors=True)
    shutil.rmtree(layout.socket_dir, ignore_errors=True)


def host_traces(root: Path) -> dict[str, list[str]]:
    """What a real node can leave on the host, by kind: `down` must bring each list back to what
    it was before `up`."""
    chain_names: list[str] = []
    for family, ours, jumps in _saved_chains():
        chain_names += [f"{family}/{t}/{c}" for t, names in ours.items() for c in names]
        chain_names += [f"{family}/{t}: {rule}" for t, rule in jumps]
    return {
        "processes": [str(pid) for pid in _pids_naming(root, SOCKETS_DIR)],
        "mounts": mounts_under(root),
        "cgroups": [str(d) for d in _cgroup_dirs()],
        "links": sorted(n for n in _links() if n.startswith(("stratusbr", "veth"))),
        "iptables": sorted(chain_names),
        "sysctls": [f"{key}={value}" for key, value in _sysctls().items()],
        "sockets": sorted(str(p) for p in SOCKETS_DIR.glob("*")) if SOCKETS_DIR.is_dir() else [],
    }
