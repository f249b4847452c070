"""CRDs of the projects Stratus integrates with (Gateway API, KEDA; Kueue's through
stratus.devcluster.kueue), read from their pinned Go modules through the module proxy and cached
in Go's module cache, outside the repository."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path

from stratus.devcluster import binaries

# name -> (Go module, version key in versions.env, CRD files inside the module)
CRDS = {
    "gateway-api": (
        "sigs.k8s.io/gateway-api",
        "GATEWAY_API_VERSION",
        (
            "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml",
            "config/crd/standard/gateway.networking.k8s.io_gateways.yaml",
            "config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml",
        ),
    ),
    "keda": (
        "github.com/kedacore/keda/v2",
        "KEDA_VERSION",
        ("config/crd/bases/keda.sh_scaledobjects.yaml",),
    ),
}


def crd_files(name: str) -> list[Path]:
    module, key, files = CRDS[name]
    return module_files(module, binaries.versions()[key], files)


def module_files(module: str, version: str, files: Iterable[str]) -> list[Path]:
    """Where `files` of a Go module at `version` are, once the module is in Go's cache."""
    done = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    info = json.loads(done.stdout or "{}")
    if done.returncode != 0 or "Dir" not in info:
        raise RuntimeError(f"cannot fetch {module}@{version}: {info.get('Error') or done.stderr}")
    return [Path(info["Dir"]) / f for f in files]
