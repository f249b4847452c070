"""kube-score, a third-party Kubernetes policy scanner, over what the project ships (`make lint`):
the chart rendered with each set of values hack/kube-score.yaml names, and manifests/install.yaml
as it is. Every check runs, the optional ones too. A finding fails lint unless a waiver in that
file covers it, with its reason; a waiver that covers no finding fails lint too, so none outlives
the finding it was written for."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stratus.devcluster import binaries, packaging

CONFIG = packaging.REPO / "hack" / "kube-score.yaml"
MANIFESTS = packaging.REPO / "manifests" / "install.yaml"
# The scan of manifests/install.yaml; the others are named in the config.
MANIFESTS_SCAN = "manifests"
# kube-score's grade for a check that passed; critical is 1, warning 5, almost OK 7.
ALL_OK = 10


class Waiver(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checks: tuple[str, ...] = Field(min_length=1)
    # Only findings whose summary contains this text; every finding of the check when empty.
    finding: str = ""
    # Only in these scans; in every scan when empty.
    scans: tuple[str, ...] = ()
    reason: str = Field(min_length=20)


class ScanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Scan name -> the chart values it renders with.
    renders: dict[str, dict[str, Any]] = Field(min_length=1)
    waivers: tuple[Waiver, ...] = ()

    @model_validator(mode="after")
    def _scans_exist(self) -> Self:
        if MANIFESTS_SCAN in self.renders:
            raise ValueError(f"renders: {MANIFESTS_SCAN!r} is the scan of {MANIFESTS.name}")
        known = {*self.renders, MANIFESTS_SCAN}
        for waiver in self.waivers:
            unknown = set(waiver.scans) - known
            if unknown:
                raise ValueError(f"waiver {waiver.checks}: no scan named {sorted(unknown)}")
        return self


@dataclass(frozen=True)
class Finding:
    scan: str
    obj: str  # kube-score's name of the object: Kind/apiVersion/namespace/name
    check: str
    summary: str

    def __str__(self) -> str:
        return f"{self.scan}: {self.obj}: {self.check}: {self.summary}"


def load_config(path: Path) -> ScanConfig:
    return ScanConfig.model_validate(yaml.safe_load(path.read_text()))


def findings(scan: str, report: list[dict[str, Any]]) -> list[Finding]:
    """kube-score's JSON report (v2) as one finding per comment of each check that did not pass."""
    found = []
    for obj in report:
        for result in obj.get("checks") or []:
            if result["skipped"] or result["grade"] >= ALL_OK:
                continue
            for comment in result.get("comments") or [{"summary": "", "path": ""}]:
                where = f" ({comment['path']})" if comment.get("path") else ""
                found.append(
                    Finding(
                        scan, obj["object_name"], result["check"]["id"], comment["summary"] + where
                    )
                )
    return found


def covers(waiver: Waiver, check: str, finding: Finding) -> bool:
    return (
        check == finding.check
        and waiver.finding in finding.summary
        and (not waiver.scans or finding.scan in waiver.scans)
    )


def judge(found: list[Finding], waivers: tuple[Waiver, ...]) -> tuple[list[Finding], list[str]]:
    """The findings no waiver covers, and each waived check that covers no finding."""
    unwaived = [f for f in found if not any(covers(w, c, f) for w in waivers for c in w.checks)]
    stale = [c for w in waivers for c in w.checks if not any(covers(w, c, f) for f in found)]
    return unwaived, stale


def tool(name: str) -> Path:
    """One lint tool, the user's own at the pinned version or the cache's (hack/build-binaries.sh
    lint builds them)."""
    try:
        return binaries.locate(name)[name]
    except binaries.MissingBinariesError as exc:
        raise binaries.MissingBinariesError(
            f"{exc} (`hack/build-binaries.sh lint` builds only the lint tools)"
        ) from exc


def run(*cmd: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def render(values: dict[str, Any]) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(values, file)
        file.flush()
        done = run(
            tool("helm"),
            "template",
            "stratus",
            packaging.CHART,
            "--namespace",
            packaging.NAMESPACE,
            "--values",
            file.name,
        )
    if done.returncode != 0:
        raise RuntimeError(f"helm template: {done.stderr.strip()}")
    return done.stdout


def score(scan: str, manifests: str) -> list[Finding]:
    minor = ".".join(binaries.versions()["KUBERNETES_VERSION"].split(".")[:2])
    done = run(
        tool("kube-score"),
        "score",
        "--kubernetes-version",
        minor,
        "--all-default-optional",
        "--output-format",
        "json",
        "-",
        stdin=manifests,
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"kube-score ({scan}): {done.stderr.strip()}") from None
    return findings(scan, report)


def main() -> int:
    config = load_config(CONFIG)
    found = score(MANIFESTS_SCAN, MANIFESTS.read_text())
    for scan, values in config.renders.items():
        found += score(scan, render(values))
    unwaived, stale = judge(found, config.waivers)
    rel = CONFIG.relative_to(packaging.REPO)
    for finding in unwaived:
        print(f"kube-score: {finding}")
    for check in stale:
        print(f"kube-score: stale waiver in {rel}: {check} covers no finding")
    scans = 1 + len(config.renders)
    print(
        f"kube-score: {scans} scans, {len(found) - len(unwaived)} findings waived in {rel}, "
        f"{len(unwaived)} not waived, {len(stale)} stale waivers"
    )
    return 1 if unwaived or stale else 0


if __name__ == "__main__":
    sys.exit(main())
