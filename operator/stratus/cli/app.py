"""The `stratus` command (also `kubectl stratus`, as a kubectl plugin)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratus import extras
from stratus.cli import cost, migrate, resources, rollout

if TYPE_CHECKING:
    from stratus.devcluster.cluster import LocalCluster


def _dev_cluster(args: argparse.Namespace) -> LocalCluster:
    # Imported here: the operator's image does not ship the local cluster's dependencies, nor
    # does a plain `pip install stratus-operator` (the devcluster extra does).
    extras.require("devcluster", "stratus dev")
    from stratus.devcluster import cluster, nodepools, realnode  # noqa: PLC0415

    pools = nodepools.load_pools(getattr(args, "pools", None))
    attach = getattr(args, "attach", None)
    node = None
    if getattr(args, "real_node", False) and attach is None:
        reason = realnode.unavailable()
        if reason:
            print(f"no real node: {reason}", file=sys.stderr)
        else:
            node = realnode.RealNode()
    return cluster.LocalCluster(
        args.state_dir,
        pools,
        attach_to=attach,
        real_node=node,
        with_kueue=getattr(args, "kueue", False),
    )


def cmd_dev_up(args: argparse.Namespace) -> int:
    local = _dev_cluster(args)
    state = local.up(timeout=args.timeout)
    print(f"kubeconfig: {state.kubeconfig}")
    return 0


def cmd_dev_down(args: argparse.Namespace) -> int:
    local = _dev_cluster(args)
    local.down()
    return 0


def cmd_dev_status(args: argparse.Namespace) -> int:
    local = _dev_cluster(args)
    state = local.state()
    if state is None:
        print(f"no cluster under {local.layout.root}")
        return 1
    running = local.running()
    for proc in state.processes:
        verdict = "running" if running.get(proc.name) else "NOT RUNNING"
        print(f"{proc.name:<24} pid {proc.pid:<8} port {proc.port:<6} {verdict}")
    print(f"server:     {state.server} (Kubernetes {state.kubernetes_version})")
    print(f"kubeconfig: {state.kubeconfig}")
    return 0 if all(running.values()) else 1


def cmd_dev_env(args: argparse.Namespace) -> int:
    from stratus.devcluster import binaries, objectstore  # noqa: PLC0415

    local = _dev_cluster(args)
    bin_dirs = binaries.locate().search_path()
    print(f"export KUBECONFIG={local.kubeconfig}")
    print(f"export PATH={':'.join(bin_dirs)}:$PATH")
    store = objectstore.credentials(local.layout.object_store)
    if store is not None:
        print(f"export STRATUS_S3_ENDPOINT={store.endpoint}")
        print(f"export STRATUS_S3_BUCKET={store.bucket}")
        for key, value in store.env().items():
            print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_dev_preempt(args: argparse.Namespace) -> int:
    from stratus.devcluster import kubeapi  # noqa: PLC0415

    kubeconfig = args.kubeconfig or _dev_cluster(args).kubeconfig
    api = kubeapi.connect(kubeconfig)
    replacement = api.preempt(args.node, delete=not args.keep_node, replace=args.replace)
    if replacement == args.node:
        print(f"node {args.node} reclaimed; it is back as new capacity")
        return 0
    print(
        f"node {args.node} reclaimed"
        + (f"; replacement {replacement} joined" if replacement else "")
    )
    return 0


def cmd_dev_simulate(args: argparse.Namespace) -> int:
    import yaml  # noqa: PLC0415

    from stratus.devcluster import nodepools  # noqa: PLC0415

    docs = [d for path in args.files for d in yaml.safe_load_all(path.read_text()) if d]
    print(yaml.safe_dump_all([nodepools.simulated(d) for d in docs], sort_keys=False), end="")
    return 0


def cmd_crds(args: argparse.Namespace) -> int:
    from stratus.api import crd  # noqa: PLC0415

    for path in crd.write_all(args.out):
        print(f"wrote {path}")
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    import dataclasses  # noqa: PLC0415
    import os  # noqa: PLC0415

    if args.kubeconfig:
        # Before the client library is imported: it reads KUBECONFIG once, at import.
        os.environ["KUBECONFIG"] = str(args.kubeconfig)
    from stratus import config, operator  # noqa: PLC0415

    cfg = config.from_env()
    if args.namespace:
        cfg = dataclasses.replace(cfg, namespaces=tuple(args.namespace))
    if args.metrics_port is not None:
        cfg = dataclasses.replace(cfg, metrics_port=args.metrics_port)
    if args.health_port is not None:
        cfg = dataclasses.replace(cfg, health_port=args.health_port)
    operator.run(cfg, verbose=args.verbose)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    # Imported here: only this command serves the page.
    from stratus import dashboard  # noqa: PLC0415

    code: int = dashboard.serve(
        host=args.address,
        port=args.port,
        kubeconfig=args.kubeconfig,
        namespace=args.namespace,
        open_browser=not args.no_browser,
    )
    return code


def _dashboard_command(sub: Any) -> None:
    dashboard = sub.add_parser(
        "dashboard", help="a web page of every TrainingJob and InferenceService, live"
    )
    dashboard.add_argument("--address", default="127.0.0.1", help="listen on (default 127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=3100, help="default 3100")
    dashboard.add_argument(
        "--kubeconfig", type=Path, default=None, help="default: KUBECONFIG, else ~/.kube/config"
    )
    dashboard.add_argument(
        "-n", "--namespace", default=None, help="show only this namespace (default: all)"
    )
    dashboard.add_argument(
        "--no-browser", action="store_true", help="do not open the page in a browser"
    )
    dashboard.set_defaults(func=cmd_dashboard)


def build_parser(prog: str = "stratus") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    op = sub.add_parser("operator", help="run the operator (configured by STRATUS_* variables)")
    op.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="cluster to run against (default: in-cluster, then KUBECONFIG)",
    )
    op.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; default: all)",
    )
    op.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="port of /metrics (default 8080)",
    )
    op.add_argument(
        "--health-port",
        type=int,
        default=None,
        help="port of /healthz, the liveness probe (default: the metrics port + 1)",
    )
    op.add_argument("--verbose", action="store_true", help="debug logging")
    op.set_defaults(func=cmd_operator)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-n", "--namespace", default=None, help="default: the kubeconfig context's, else default"
    )
    common.add_argument(
        "--kubeconfig", type=Path, default=None, help="default: KUBECONFIG, else ~/.kube/config"
    )
    resources.add_commands(sub, common)
    rollout.add_commands(sub, common)
    cost.add_commands(sub, common)
    _dashboard_command(sub)
    migrate.add_commands(sub)

    crds = sub.add_parser("crds", help="generate the CRDs from the API models")
    crds.add_argument("--out", type=Path, default=Path("crds"), help="output directory")
    crds.set_defaults(func=cmd_crds)

    dev = sub.add_parser("dev", help="the local control plane with simulated GPU nodes")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)

    def dev_command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = dev_sub.add_parser(name, help=help_text)
        p.add_argument(
            "--state-dir",
            type=Path,
            default=Path(".stratus"),
            help="where the cluster keeps its data, logs and kubeconfig",
        )
        return p

    up = dev_command("up", "start the cluster (or reuse a running one) and wait until ready")
    up.add_argument(
        "--pools",
        type=Path,
        default=None,
        help="YAML file of node pools (default: gpu-ondemand, gpu-spot, cpu)",
    )
    up.add_argument(
        "--attach",
        type=Path,
        default=None,
        metavar="KUBECONFIG",
        help="add only kwok and the node pools to this existing cluster (kind)",
    )
    up.add_argument(
        "--no-real-node",
        dest="real_node",
        action="store_false",
        help="simulated nodes only (by default, on Linux as root, a real kubelet joins too)",
    )
    up.add_argument(
        "--kueue",
        action="store_true",
        help="run Kueue too (make binaries builds it), with flavors spot and on-demand, "
        "ClusterQueue gpu and LocalQueue default/gpu for TrainingJobs' spec.queueName",
    )
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    up.set_defaults(func=cmd_dev_up)
    dev_command("down", "stop every process of the cluster").set_defaults(func=cmd_dev_down)
    dev_command("status", "say what runs").set_defaults(func=cmd_dev_status)
    dev_command("env", 'print shell exports for kubectl: eval "$(stratus dev env)"').set_defaults(
        func=cmd_dev_env
    )
    preempt = dev_command("preempt", "reclaim a node the way a cloud reclaims a spot node")
    preempt.add_argument("node")
    preempt.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="act on this cluster instead of the one under --state-dir",
    )
    preempt.add_argument(
        "--keep-node",
        action="store_true",
        help="taint the node NoExecute but leave the Node object",
    )
    preempt.add_argument(
        "--replace", action="store_true", help="bring up a new node of the same pool afterwards"
    )
    preempt.set_defaults(func=cmd_dev_preempt)
    simulate = dev_sub.add_parser(
        "simulate",
        help="print TrainingJobs and InferenceServices made to run on the simulated pools "
        "(for kubectl apply -f -)",
    )
    simulate.add_argument("files", nargs="+", type=Path)
    simulate.set_defaults(func=cmd_dev_simulate)
    return parser


def main(argv: list[str] | None = None, prog: str = "stratus") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        code: int = args.func(args)
    except (RuntimeError, ValueError) as exc:
        # One line, never a traceback: a missing resource, a refused change, a bad flag value.
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except extras.MissingExtraError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


def plugin_main() -> int:
    """`kubectl stratus ...`: kubectl runs the `kubectl-stratus` found on PATH."""
    return main(prog="kubectl stratus")
