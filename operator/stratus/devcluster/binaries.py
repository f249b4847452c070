"""Where the Go-built control-plane binaries live: built by hack/build-binaries.sh into a cache
outside the repository, at paths derived from the versions pinned in versions.env. Binaries the
user already has are used instead when they report the pinned version:
- STRATUS_BIN_DIR: a directory holding any of them;
- KUBEBUILDER_ASSETS: envtest's directory of kube-apiserver, etcd and kubectl.
Only what neither holds at the pinned version is built.

Standard library only: hack/build-binaries.sh and the Makefile run this module before the venv
exists (`python -m stratus.devcluster.binaries plan|missing`)."""

from __future__ import annotations

import argparse
import functools
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

VERSIONS_FILE = Path(__file__).with_name("versions.env")

# component -> (version key in versions.env, binaries it provides): what the local cluster runs.
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
# `make lint`'s policy scanner, and the peer `make bench` compares against. The peer is only ever
# taken from the cache: its CRD is copied beside it from the same module.
TOOLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "kube-score": ("KUBE_SCORE_VERSION", ("kube-score",)),
}
PEER: dict[str, tuple[str, tuple[str, ...]]] = {
    "training-operator": ("TRAINING_OPERATOR_VERSION", ("training-operator.v1",)),
}
# Kueue, which a cluster runs only on request (`stratus dev up --kueue`, the Kueue e2e tests).
# Only ever taken from the cache too: hack/build-binaries.sh builds it with one line changed (where
# it reads its metrics serving certificate), which a user's own build would not have.
KUEUE: dict[str, tuple[str, tuple[str, ...]]] = {
    "kueue": ("KUEUE_VERSION", ("kueue",)),
}
CACHE_ONLY = frozenset({*PEER, *KUEUE})
# What each argument of hack/build-binaries.sh builds (`all` is its default, no argument).
GROUPS: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "all": {**COMPONENTS, **TOOLS, **KUEUE},
    "lint": {"helm": COMPONENTS["helm"], **TOOLS},
    "peer": PEER,
}

# Seconds to build each binary from Go modules on a 2-core machine with an empty Go cache,
# measured for issue 18: Kubernetes, etcd, kwok and helm 771 s together (split evenly over their
# nine binaries), metrics-server 128 s, SeaweedFS 607 s, kube-score about 60 s, the peer 97 s;
# Kueue 252 s (issue 16).
BUILD_SECONDS: dict[str, int] = {
    "kubernetes": 86,
    "etcd": 86,
    "kwok": 86,
    "helm": 86,
    "metrics-server": 128,
    "seaweedfs": 607,
    "kube-score": 60,
    "training-operator": 97,
    "kueue": 252,
}

# Where the user's own binaries may be, in the order they are tried, and which names each may
# provide (None: any).
EXTERNAL_DIRS: tuple[tuple[str, frozenset[str] | None], ...] = (
    ("STRATUS_BIN_DIR", None),
    ("KUBEBUILDER_ASSETS", frozenset({"kube-apiserver", "etcd", "kubectl"})),
)

# How each binary says its version; `--version` unless named here.
VERSION_ARGS: dict[str, tuple[str, ...]] = {
    "kubectl": ("version", "--client"),
    "helm": ("version", "--template", "{{.Version}}"),
    "weed": ("version",),
    "kube-score": ("version",),
}

# A Go pseudo-version (v0.0.0-20261109003541-7506e5f91cd6) names a commit, which is what a binary
# built from it reports.
_PSEUDO = re.compile(r"^v?\d+\.\d+\.\d+-(?:\S+\.)?\d{14}-(?P<commit>[0-9a-f]{12})$")


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


def version_matches(output: str, pinned: str) -> bool:
    """Whether a binary's version output names the pinned version: `Kubernetes v1.34.4`,
    `etcd Version: 3.6.16`, `v3.19.5+g1a2b3c4` (build metadata is ignored) all match their pin;
    v1.34.40 and v1.34.4-rc.0 do not. A pseudo-version matches its commit."""
    pseudo = _PSEUDO.match(pinned)
    if pseudo:
        return re.search(rf"(?<![0-9a-f]){pseudo['commit']}(?![0-9a-f])", output) is not None
    bare = re.escape(pinned.removeprefix("v"))
    return re.search(rf"(?<![\w.\-])v?{bare}(?![\w.\-])", output) is not None


@functools.cache
def _run_version(path: Path, args: tuple[str, ...], stamp: tuple[int, int]) -> str:
    del stamp  # part of the cache key only: a replaced binary is asked again
    try:
        done = subprocess.run(
            [str(path), *args], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr


def probe_version(path: Path) -> str:
    """What the binary at `path` says its version is (empty when it says nothing)."""
    stat = path.stat()
    return _run_version(
        path, VERSION_ARGS.get(path.name, ("--version",)), (stat.st_mtime_ns, stat.st_size)
    )


Probe = Callable[[Path], str]


@dataclass(frozen=True)
class Choice:
    """Where one binary comes from: `reuse` (a user's directory), `cached` (built earlier) or
    `build`; `path` is None only for `build`; `note` says why a user's binary was passed over."""

    name: str
    component: str
    version: str
    action: str
    path: Path | None
    source: str = ""
    note: str = ""


def resolve(
    name: str,
    component: str,
    pinned: str,
    env: Mapping[str, str],
    probe: Probe = probe_version,
) -> Choice:
    notes = []
    if component not in CACHE_ONLY:
        for variable, names in EXTERNAL_DIRS:
            folder = env.get(variable)
            if not folder or (names is not None and name not in names):
                continue
            path = Path(folder) / name
            if not os.access(path, os.X_OK):
                continue
            said = probe(path).strip()
            if version_matches(said, pinned):
                return Choice(name, component, pinned, "reuse", path, variable)
            first = said.splitlines()[0] if said else "no version"
            notes.append(f"{variable}/{name} says {first!r}, not {pinned}")
    cached = cache_dir() / "bin" / f"{component}-{pinned}" / name
    if os.access(cached, os.X_OK):
        return Choice(name, component, pinned, "cached", cached, "cache", "; ".join(notes))
    return Choice(name, component, pinned, "build", None, "", "; ".join(notes))


def plan(
    groups: Iterable[str] = ("all",),
    env: Mapping[str, str] | None = None,
    probe: Probe = probe_version,
) -> list[Choice]:
    """Where each binary of `groups` will come from, in build order."""
    env = os.environ if env is None else env
    pinned = versions()
    choices: dict[str, Choice] = {}
    for group in groups:
        for component, (key, names) in GROUPS[group].items():
            for name in names:
                if name not in choices:
                    choices[name] = resolve(name, component, pinned[key], env, probe)
    return list(choices.values())


def build_seconds(choices: Iterable[Choice]) -> int:
    return sum(BUILD_SECONDS[c.component] for c in choices if c.action == "build")


def plan_text(choices: list[Choice], env: Mapping[str, str] | None = None) -> str:
    """What a run will reuse, find cached and build, and roughly how long the builds take."""
    env = os.environ if env is None else env
    lines = ["binaries (versions pinned in operator/stratus/devcluster/versions.env):"]
    for variable, _ in EXTERNAL_DIRS:
        reused = [c.name for c in choices if c.action == "reuse" and c.source == variable]
        if reused:
            lines.append(f"  reuse from {variable}={env.get(variable, '')}: {', '.join(reused)}")
    cached = [c.name for c in choices if c.action == "cached"]
    if cached:
        lines.append(f"  cached in {cache_dir() / 'bin'}: {', '.join(cached)}")
    to_build = [c for c in choices if c.action == "build"]
    if to_build:
        lines.append(
            "  build from Go modules: " + ", ".join(f"{c.name} {c.version}" for c in to_build)
        )
    lines.extend(f"  not reused: {c.note}" for c in choices if c.note)
    seconds = build_seconds(choices)
    if seconds:
        lines.append(
            f"  building takes about {max(1, round(seconds / 60))} min on 2 cores "
            "(less with more); set STRATUS_BIN_DIR or KUBEBUILDER_ASSETS to reuse your own"
        )
    else:
        lines.append("  nothing to build")
    return "\n".join(lines)


def locate(*only: str) -> Binaries:
    """Every cluster binary's path, or only those named; raises with the build command when any
    is missing."""
    pinned = versions()
    env = os.environ
    paths: dict[str, Path] = {}
    missing: list[str] = []
    for component, (key, names) in {**COMPONENTS, **TOOLS, **KUEUE}.items():
        for name in names:
            if (only and name not in only) or (not only and component not in COMPONENTS):
                continue
            choice = resolve(name, component, pinned[key], env)
            if choice.path is None:
                missing.append(str(cache_dir() / "bin" / f"{component}-{pinned[key]}" / name))
            else:
                paths[name] = choice.path
    if missing:
        raise MissingBinariesError(
            "control-plane binaries are not built: "
            + ", ".join(missing)
            + ". Run `make binaries` (hack/build-binaries.sh) first, or name a directory that"
            " holds them at the pinned versions in STRATUS_BIN_DIR."
        )
    return Binaries(paths)


@dataclass(frozen=True)
class Binaries:
    paths: dict[str, Path]

    def __getitem__(self, name: str) -> Path:
        return self.paths[name]

    @property
    def kubernetes_version(self) -> str:
        return versions()["KUBERNETES_VERSION"]

    def search_path(self) -> list[str]:
        """The directories that hold these binaries, for PATH: kubectl's and helm's first, so a
        user's directory with other versions of them never shadows the chosen ones."""
        first = [self.paths[n].parent for n in ("kubectl", "helm") if n in self.paths]
        rest = sorted({p.parent for p in self.paths.values()} - set(first))
        return list(dict.fromkeys(str(d) for d in (*first, *rest)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stratus.devcluster.binaries")
    parser.add_argument("command", choices=("plan", "missing"))
    parser.add_argument("groups", nargs="*", help=f"any of {', '.join(GROUPS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group {', '.join(sorted(unknown))}")
    choices = plan(args.groups or ["all"])
    if args.command == "plan":
        print(plan_text(choices))
    else:
        for choice in choices:
            if choice.action == "build":
                print(choice.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
