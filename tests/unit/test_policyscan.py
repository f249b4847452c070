"""The kube-score gate of `make lint`: which findings fail it, which waivers cover them, and the
waiver file itself."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from stratus.devcluster import binaries, packaging, policyscan
from stratus.devcluster.policyscan import Finding, ScanConfig, Waiver

REASON = "a reason long enough to say why"


def result(check: str, grade: int, *comments: tuple[str, str], skipped: bool = False) -> Any:
    return {
        "check": {"id": check, "name": check, "optional": False},
        "grade": grade,
        "skipped": skipped,
        "comments": [{"path": p, "summary": s, "description": ""} for p, s in comments] or None,
    }


REPORT: list[dict[str, Any]] = [
    {
        "object_name": "Deployment/apps/v1/ns/op",
        "type_meta": {"kind": "Deployment", "apiVersion": "apps/v1"},
        "object_meta": {"name": "op", "namespace": "ns"},
        "checks": [
            result("stable-version", 10),
            result("deployment-has-poddisruptionbudget", 10, ("", "skipped"), skipped=True),
            result("container-resources", 1, ("op", "CPU limit is not set")),
            result("pod-networkpolicy", 1, ("", "The pod does not have a matching NetworkPolicy")),
            result("deployment-has-host-podantiaffinity", 5),
        ],
    },
    {"object_name": "Service/v1/ns/op", "type_meta": {"kind": "Service"}, "checks": None},
]


def test_findings_are_the_checks_that_did_not_pass_one_per_comment() -> None:
    found = policyscan.findings("defaults", REPORT)
    assert [(f.check, f.summary) for f in found] == [
        ("container-resources", "CPU limit is not set (op)"),
        ("pod-networkpolicy", "The pod does not have a matching NetworkPolicy"),
        ("deployment-has-host-podantiaffinity", ""),
    ]
    assert {f.obj for f in found} == {"Deployment/apps/v1/ns/op"}
    assert str(found[0]) == "defaults: Deployment/apps/v1/ns/op: container-resources: " + (
        "CPU limit is not set (op)"
    )


def finding(check: str, summary: str = "", scan: str = "defaults") -> Finding:
    return Finding(scan, "Deployment/apps/v1/ns/op", check, summary)


def test_a_finding_no_waiver_covers_fails_and_so_does_a_waiver_that_covers_nothing() -> None:
    found = [
        finding("container-resources", "CPU limit is not set (op)"),
        finding("container-resources", "Memory limit is not set (op)"),
        finding("pod-networkpolicy", scan="defaults"),
        finding("pod-networkpolicy", scan="everything-on"),
    ]
    waivers = (
        Waiver(checks=("container-resources",), finding="CPU limit", reason=REASON),
        Waiver(checks=("pod-networkpolicy",), scans=("defaults",), reason=REASON),
        Waiver(checks=("pod-networkpolicy", "service-type"), reason=REASON),
    )
    unwaived, stale = policyscan.judge(found, waivers[:2])
    # The waiver names one finding of the check, in one scan: the others still fail.
    assert unwaived == [found[1], found[3]]
    assert stale == []
    unwaived, stale = policyscan.judge(found[:1], waivers)
    assert unwaived == []
    assert stale == ["pod-networkpolicy", "pod-networkpolicy", "service-type"]


def test_a_waiver_needs_its_reason_and_known_scans() -> None:
    with pytest.raises(ValidationError, match="reason"):
        Waiver.model_validate({"checks": ["pod-networkpolicy"]})
    with pytest.raises(ValidationError, match="reason"):
        Waiver.model_validate({"checks": ["pod-networkpolicy"], "reason": "because"})
    with pytest.raises(ValidationError, match="checks"):
        Waiver.model_validate({"checks": [], "reason": REASON})
    with pytest.raises(ValidationError, match="no scan named"):
        ScanConfig.model_validate(
            {
                "renders": {"defaults": {}},
                "waivers": [{"checks": ["x"], "scans": ["everything"], "reason": REASON}],
            }
        )
    with pytest.raises(ValidationError, match="manifests"):
        ScanConfig.model_validate({"renders": {"manifests": {}}})


def test_the_waiver_file_loads_and_scans_the_optional_objects() -> None:
    config = policyscan.load_config(policyscan.CONFIG)
    assert "defaults" in config.renders
    on = config.renders["everything-on"]
    assert on["networkPolicy"]["enabled"] is True
    assert on["replicas"] > 1
    # Waived only where the opt-in object is absent: the everything-on scan must pass them.
    scoped = {c: w.scans for w in config.waivers for c in w.checks}
    assert set(scoped["pod-networkpolicy"]) == {"manifests", "defaults"}
    assert set(scoped["deployment-replicas"]) == {"manifests", "defaults"}


def test_the_scanner_module_pins_the_version_built() -> None:
    pinned = binaries.versions()["KUBE_SCORE_VERSION"]
    go_mod = (packaging.REPO / "hack" / "tools" / "kube-score" / "go.mod").read_text()
    assert re.search(rf"^require github.com/zegl/kube-score {re.escape(pinned)}$", go_mod, re.M)
