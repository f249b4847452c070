"""Binaries the user already has are reused when their version is the pinned one; only the rest
is built, and `make test`/`make dev` say so, with a rough time, before they start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stratus.devcluster import binaries

REPO = Path(__file__).resolve().parents[2]
PINNED = binaries.versions()


@pytest.mark.parametrize(
    ("output", "pinned"),
    [
        ("Kubernetes v1.34.4\n", "v1.34.4"),
        ("etcd Version: 3.6.16\nGit SHA: Not provided\nGo Version: go1.26.8\n", "v3.6.16"),
        ("Client Version: v1.34.4\nKustomize Version: v5.7.1\n", "v1.34.4"),
        ("kwok version v0.7.0 go1.26.8 (linux/amd64)\n", "v0.7.0"),
        ("v3.19.5+g7a0b3c1", "v3.19.5"),
        ("kube-score version: v1.20.0, commit: N/A, built: N/A\n", "v1.20.0"),
        ("version 30GB 4.53 7506e5f91cd6 linux amd64\n", "v0.0.0-20261109003541-7506e5f91cd6"),
    ],
)
def test_version_outputs_of_every_kind_match_their_pin(output: str, pinned: str) -> None:
    assert binaries.version_matches(output, pinned)


@pytest.mark.parametrize(
    ("output", "pinned"),
    [
        ("Kubernetes v1.34.40\n", "v1.34.4"),
        ("Kubernetes v1.34.4-rc.0\n", "v1.34.4"),
        ("Kubernetes v1.33.4\n", "v1.34.4"),
        ("etcd Version: 3.5.21\nGo Version: go3.6.16\n", "v3.6.16"),
        ("Kubernetes v11.34.4\n", "v1.34.4"),
        ("", "v1.34.4"),
        ("version 30GB 4.53 7506e5f91cd7 linux amd64\n", "v0.0.0-20261109003541-7506e5f91cd6"),
    ],
)
def test_other_versions_do_not_match(output: str, pinned: str) -> None:
    assert not binaries.version_matches(output, pinned)


def fake_binary(folder: Path, name: str, says: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\nprintf '%s\\n' '{says}'\n")
    path.chmod(0o755)
    return path


def test_a_user_binary_is_asked_its_version_the_way_it_answers(tmp_path: Path) -> None:
    echo = '#!/bin/sh\necho "$@"\n'
    for name in ("kubectl", "etcd", "helm"):
        (tmp_path / name).write_text(echo)
        (tmp_path / name).chmod(0o755)
    assert binaries.probe_version(tmp_path / "kubectl").strip() == "version --client"
    assert binaries.probe_version(tmp_path / "etcd").strip() == "--version"
    assert binaries.probe_version(tmp_path / "helm").strip() == "version --template {{.Version}}"


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("STRATUS_CACHE", str(cache))
    return cache


def by_name(choices: list[binaries.Choice]) -> dict[str, binaries.Choice]:
    return {c.name: c for c in choices}


def test_envtest_assets_at_the_pinned_versions_are_reused_and_the_rest_is_built(
    tmp_path: Path, empty_cache: Path
) -> None:
    assets = tmp_path / "envtest"
    fake_binary(assets, "kube-apiserver", f"Kubernetes {PINNED['KUBERNETES_VERSION']}")
    fake_binary(assets, "kubectl", f"Client Version: {PINNED['KUBERNETES_VERSION']}")
    fake_binary(assets, "etcd", "etcd Version: 3.5.21")  # envtest's etcd, not ours
    # KUBEBUILDER_ASSETS provides only envtest's three, whatever else the folder holds.
    fake_binary(assets, "kwok", f"kwok version {PINNED['KWOK_VERSION']}")
    choices = by_name(binaries.plan(env={"KUBEBUILDER_ASSETS": str(assets)}))
    assert choices["kube-apiserver"].action == "reuse"
    assert choices["kube-apiserver"].path == assets / "kube-apiserver"
    assert choices["kubectl"].source == "KUBEBUILDER_ASSETS"
    assert choices["etcd"].action == "build"
    assert "3.5.21" in choices["etcd"].note
    assert choices["kwok"].action == "build"
    assert choices["kubelet"].action == "build"


def test_stratus_bin_dir_wins_over_envtest_and_the_cache_is_used_next(
    tmp_path: Path, empty_cache: Path
) -> None:
    mine, assets = tmp_path / "mine", tmp_path / "envtest"
    version = PINNED["KUBERNETES_VERSION"]
    fake_binary(mine, "kube-apiserver", f"Kubernetes {version}")
    fake_binary(assets, "kube-apiserver", f"Kubernetes {version}")
    fake_binary(mine, "weed", "version 30GB 4.53 0000000000ff linux amd64")
    cached = fake_binary(
        empty_cache / "bin" / f"seaweedfs-{PINNED['SEAWEEDFS_VERSION']}", "weed", "anything"
    )
    env = {"STRATUS_BIN_DIR": str(mine), "KUBEBUILDER_ASSETS": str(assets)}
    choices = by_name(binaries.plan(env=env))
    assert choices["kube-apiserver"].path == mine / "kube-apiserver"
    # A mismatched binary of the user's is passed over for the cache's, with the reason.
    assert (choices["weed"].action, choices["weed"].path) == ("cached", cached)
    assert "0000000000ff" in choices["weed"].note


def test_the_peer_comes_only_from_the_cache(tmp_path: Path, empty_cache: Path) -> None:
    mine = tmp_path / "mine"
    fake_binary(mine, "training-operator.v1", PINNED["TRAINING_OPERATOR_VERSION"])
    choices = by_name(binaries.plan(["peer"], env={"STRATUS_BIN_DIR": str(mine)}))
    assert choices["training-operator.v1"].action == "build"


def test_kueue_comes_only_from_the_cache_and_a_plain_cluster_does_not_need_it(
    tmp_path: Path, empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "mine"
    fake_binary(mine, "kueue", PINNED["KUEUE_VERSION"])
    choices = by_name(binaries.plan(["all"], env={"STRATUS_BIN_DIR": str(mine)}))
    assert choices["kueue"].action == "build"
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.delenv("STRATUS_BIN_DIR", raising=False)
    with pytest.raises(binaries.MissingBinariesError) as missing:
        binaries.locate()
    assert f"kueue-{PINNED['KUEUE_VERSION']}" not in str(missing.value)
    cached = fake_binary(empty_cache / "bin" / f"kueue-{PINNED['KUEUE_VERSION']}", "kueue", "")
    assert binaries.locate("kueue")["kueue"] == cached


def test_locate_takes_the_users_binary_and_says_how_to_get_the_missing_ones(
    tmp_path: Path, empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "mine"
    helm = fake_binary(mine, "helm", PINNED["HELM_VERSION"])
    monkeypatch.setenv("STRATUS_BIN_DIR", str(mine))
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    assert binaries.locate("helm")["helm"] == helm
    with pytest.raises(binaries.MissingBinariesError, match="STRATUS_BIN_DIR") as missing:
        binaries.locate("helm", "etcd")
    assert f"etcd-{PINNED['ETCD_VERSION']}/etcd" in str(missing.value)
    assert "helm" not in str(missing.value).split("first")[0]


def test_the_search_path_puts_the_chosen_kubectl_first(tmp_path: Path) -> None:
    bins = binaries.Binaries(
        {
            "etcd": tmp_path / "a" / "etcd",
            "kubectl": tmp_path / "z" / "kubectl",
            "helm": tmp_path / "y" / "helm",
            "kwok": tmp_path / "z" / "kwok",
        }
    )
    assert bins.search_path() == [str(tmp_path / d) for d in ("z", "y", "a")]


def test_the_plan_says_what_is_reused_cached_and_built_and_how_long(
    tmp_path: Path, empty_cache: Path
) -> None:
    assets = tmp_path / "envtest"
    fake_binary(assets, "kube-apiserver", f"Kubernetes {PINNED['KUBERNETES_VERSION']}")
    fake_binary(assets, "etcd", f"etcd Version: {PINNED['ETCD_VERSION'].removeprefix('v')}")
    fake_binary(empty_cache / "bin" / f"kwok-{PINNED['KWOK_VERSION']}", "kwok", "")
    env = {"KUBEBUILDER_ASSETS": str(assets)}
    choices = binaries.plan(["all", "peer"], env=env)
    text = binaries.plan_text(choices, env=env)
    assert f"reuse from KUBEBUILDER_ASSETS={assets}: etcd, kube-apiserver\n" in text
    assert f"cached in {empty_cache / 'bin'}: kwok\n" in text
    assert f"weed {PINNED['SEAWEEDFS_VERSION']}" in text
    assert "kube-apiserver" not in text.split("build from Go modules:")[1].split("\n")[0]
    # Five Kubernetes binaries, helm, metrics-server, weed, kube-score, kueue and the peer.
    seconds = 5 * 86 + 86 + 128 + 607 + 60 + 252 + 97
    assert binaries.build_seconds(choices) == seconds
    assert f"about {round(seconds / 60)} min" in text


def test_the_plan_of_a_warm_cache_builds_nothing(empty_cache: Path) -> None:
    for component, (key, names) in binaries.GROUPS["all"].items():
        for name in names:
            fake_binary(empty_cache / "bin" / f"{component}-{PINNED[key]}", name, "")
    choices = binaries.plan(env={})
    assert {c.action for c in choices} == {"cached"}
    assert binaries.plan_text(choices, env={}).endswith("nothing to build")


def test_the_build_times_cover_every_component_built() -> None:
    built = {component for group in binaries.GROUPS.values() for component in group}
    assert built == set(binaries.BUILD_SECONDS)
    # The components hack/build-binaries.sh builds are the ones the plan knows.
    script = (REPO / "hack" / "build-binaries.sh").read_text()
    for component in built:
        assert f"build {component} " in script, component


def test_the_module_runs_without_the_venv_and_lists_what_to_build(empty_cache: Path) -> None:
    """hack/build-binaries.sh and the Makefile run it with a bare python3 before .venv exists:
    without site-packages (-S), it still works."""
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "import runpy; sys.argv = ['x', 'missing', 'lint']; "
            "runpy.run_module('stratus.devcluster.binaries', run_name='__main__')",
            str(REPO / "operator"),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"STRATUS_CACHE": str(empty_cache)},
    )
    assert done.stdout.split() == ["helm", "kube-score"]
