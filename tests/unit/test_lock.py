"""The lock files (hack/requirements/, written by `make lock`) stay in step with pyproject.toml:
every dependency pinned, with hashes, at a version its range accepts, and the image's pins the
venv's; the venv and the image install them and nothing else."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from stratus import extras

REPO = Path(__file__).resolve().parents[2]
LOCKS = REPO / "hack" / "requirements"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
NAME = canonicalize_name(PROJECT["name"])
# The markers the lock's entries are judged under: the image's Python on Linux.
TARGET = {"python_version": "3.11", "python_full_version": "3.11.2", "sys_platform": "linux"}


def pins(text: str) -> dict[NormalizedName, tuple[Version, int]]:
    """Each pinned package's version and how many hashes it has."""
    found = {}
    for entry in re.split(r"\n(?=\S)", text):
        line = entry.strip()
        if not line or line.startswith("#"):
            continue
        requirement = Requirement(line.split(" \\")[0].split(";")[0].strip())
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{requirement} is not pinned"
        found[canonicalize_name(requirement.name)] = (Version(spec.version), line.count("--hash="))
    return found


def wanted(*chosen: str) -> list[Requirement]:
    """pyproject's requirements for the base install plus `chosen` extras, self-references
    expanded."""
    requirements = [Requirement(r) for r in PROJECT["dependencies"]]
    todo, seen = list(chosen), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for raw in PROJECT["optional-dependencies"][extra]:
            requirement = Requirement(raw)
            if canonicalize_name(requirement.name) == NAME:
                todo.extend(requirement.extras)
            else:
                requirements.append(requirement)
    return requirements


LOCKED = {"dev.txt": ("dev",), "image.txt": ("s3",)}


@pytest.mark.parametrize(("lock", "chosen"), LOCKED.items())
def test_every_requirement_is_pinned_within_its_range(lock: str, chosen: tuple[str, ...]) -> None:
    locked = pins((LOCKS / lock).read_text())
    assert locked, f"{lock} pins nothing"
    for requirement in wanted(*chosen):
        if requirement.marker and not requirement.marker.evaluate(TARGET):
            continue
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{lock} lacks {requirement}: run `make lock`"
        version, _ = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock} pins {name}=={version}, outside {requirement}: run `make lock`"
        )


@pytest.mark.parametrize("lock", LOCKED)
def test_every_pin_carries_hashes_and_the_project_is_not_pinned(lock: str) -> None:
    locked = pins((LOCKS / lock).read_text())
    assert NAME not in locked
    assert all(hashes for _, hashes in locked.values()), f"{lock}: a pin without hashes"


def test_the_image_pins_what_the_venv_tests() -> None:
    venv, image = pins((LOCKS / "dev.txt").read_text()), pins((LOCKS / "image.txt").read_text())
    differ = {
        n: (v, venv.get(n, (None,))[0])
        for n, (v, _) in image.items()
        if venv.get(n, (None,))[0] != v
    }
    assert not differ, f"image.txt and dev.txt disagree: {differ}; run `make lock`"
    assert set(image) < set(venv)


def test_kubernetes_is_held_where_botocore_agrees() -> None:
    """kubernetes 37.0.2 wants python-dateutil 3, which botocore refuses: the resolver must have
    stopped at a kubernetes that accepts botocore's python-dateutil."""
    venv = pins((LOCKS / "dev.txt").read_text())
    assert venv[canonicalize_name("python-dateutil")][0] < Version("3")
    assert venv[canonicalize_name("kubernetes")][0] != Version("37.0.2")


def test_the_venv_and_the_image_install_from_the_locks_only() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "pip install --quiet --require-hashes -r $(LOCKS)/dev.txt" in makefile
    assert "pip install --quiet --no-deps -e ." in makefile
    assert re.search(r"^LOCKS := hack/requirements$", makefile, re.MULTILINE)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY hack/requirements/image.txt ./requirements.txt" in dockerfile
    installs = re.findall(r"pip install ([^\n]*)", dockerfile)
    assert installs == [
        "--no-compile --require-hashes -r requirements.txt",
        "--no-compile --no-deps .",
    ]


def test_each_extra_named_by_the_cli_installs_the_modules_it_is_checked_for() -> None:
    for extra, modules in extras.EXTRAS.items():
        names = {canonicalize_name(r.name) for r in wanted(extra)}
        assert {canonicalize_name(m) for m in modules} <= names, extra
