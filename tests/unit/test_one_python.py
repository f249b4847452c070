"""One Python for the image, the venv and CI: the tests run on the interpreter the image runs."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# python3 of each Debian release an image might be based on.
DEBIAN_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
DOCKERFILES = ["Dockerfile", "examples/train/Dockerfile", "examples/serve/Dockerfile"]


def read(name: str) -> str:
    return (REPO / name).read_text()


def image_python() -> str:
    """The minor version of Debian's python3 that every image is built on."""
    suites = {
        suite
        for name in DOCKERFILES
        for suite in re.findall(r"^FROM debian:(\w+)", read(name), re.MULTILINE)
    }
    # Without a registry, hack/build-images.sh makes the same base with debootstrap.
    suites |= set(re.findall(r"debootstrap --variant=\S+ (\w+)", read("hack/build-images.sh")))
    assert len(suites) == 1, f"images on several Debian releases: {suites}"
    return DEBIAN_PYTHON[suites.pop()]


def test_the_tests_run_on_the_python_the_image_runs() -> None:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert running == image_python(), (
        f"the tests run on Python {running}, the image on {image_python()}: "
        "rebuild the venv with `rm -rf .venv && make venv`"
    )


def test_the_venv_and_mypy_are_pinned_to_the_images_python() -> None:
    (pinned,) = re.findall(r"^IMAGE_PYTHON := (\S+)$", read("Makefile"), re.MULTILINE)
    assert pinned == image_python()
    assert re.search(r"^PYTHON \?= python\$\(IMAGE_PYTHON\)$", read("Makefile"), re.MULTILINE)
    pyproject = tomllib.loads(read("pyproject.toml"))
    assert pyproject["tool"]["mypy"]["python_version"] == image_python()
    assert pyproject["project"]["requires-python"] == f">={image_python()}"
