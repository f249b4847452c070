"""Where the Go-built control-plane binaries live: built by hack/build-binaries.sh into a cache
outside the repository, at paths derived from the versions pinned in versions.env."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

VERSIONS_FILE = Path(__file__).with_name("versions.env")

# component -> (version key in versions.env, binaries it provides)
COMPONENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "etcd": ("ETCD_VERSION", ("etcd",)),
    "kwok": ("KWOK_VERSION", ("kwok",)),
    "helm": ("HELM_VERSION", ("helm",)),
    "kubernetes": (
        "KUBERNETES_VERSION",
        (
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubectl",
            "kubelet",
            "kube-proxy",
        ),
    ),
    "metrics-server": ("METRICS_SERVER_VERSION", ("metrics-server",)),
    "seaweedfs": ("SEAWEEDFS_VERSION", ("weed",)),
}


class MissingBinariesError(RuntimeError):
    pass


def parse_versions(text: str) -> dict[str, str]:
    versions = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


def versions() -> dict[str, str]:
    return parse_versions(VERSIONS_FILE.read_text())


def cache_dir() -> Path:
    return Path(os.environ.get("STRATUS_CACHE", Path.home() / ".cache" / "stratus"))


@dataclass(frozen=True)
class Binaries:
    paths: dict[str, Path]

    def __getitem__(self, name: str) -> Path:
        return self.paths[name]

    @property
    def kubernetes_version(self) -> str:
        return versions()["KUBERNETES_VERSION"]


def locate(*only: str) -> Binaries:
    """Every binary's path, or only those named; raises with the build command when any is
    missing."""
    pinned = versions()
    paths: dict[str, Path] = {}
    for component, (key, names) in COMPONENTS.items():
        folder = cache_dir() / "bin" / f"{component}-{pinned[key]}"
        for name in names:
            if not only or name in only:
                paths[name] = folder / name
    missing = [str(p) for p in paths.values() if not os.access(p, os.X_OK)]
    if missing:
        raise MissingBinariesError(
            "control-plane binaries are not built: "
            + ", ".join(missing)
            + ". Run `make binaries` (hack/build-binaries.sh) first."
        )
    return Binaries(paths)
