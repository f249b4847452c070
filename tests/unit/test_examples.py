"""The examples `make dev` applies carry what they need to reach the end written at their top:
a TrainingJob's PriorityClass and checkpoint claim ship in its file, and the dev cluster's
simulated volumes can hold every claim. tests/e2e/test_examples.py runs them to that end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.utils.quantity import parse_quantity

from stratus.devcluster import nodepools

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = sorted(EXAMPLES.glob("*.yaml"))
Obj = dict[str, Any]


def docs_of(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_make_dev_applies_examples() -> None:
    assert [p.name for p in FILES] == [
        "inferenceservice-canary.yaml",
        "trainingjob-distributed.yaml",
        "trainingjob-spot.yaml",
    ]


@pytest.mark.parametrize("path", [*FILES, EXAMPLES / "train" / "trainingjob.yaml"], ids=str)
def test_each_example_documents_its_end_at_the_top(path: Path) -> None:
    header = path.read_text().split("\napiVersion:", 1)[0].splitlines()
    assert all(line.startswith("#") for line in header)
    assert any(line.startswith("# End: ") for line in header)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_what_a_trainingjob_refers_to_ships_in_its_file(path: Path) -> None:
    docs = docs_of(path)
    shipped = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for job in (d for d in docs if d["kind"] == "TrainingJob"):
        spec = job["spec"]
        if "priorityClassName" in spec:
            assert ("PriorityClass", spec["priorityClassName"]) in shipped
        claim = spec.get("checkpoint", {}).get("persistentVolumeClaim")
        if claim:
            assert ("PersistentVolumeClaim", claim) in shipped


def claims() -> list[Obj]:
    return [d for p in FILES for d in docs_of(p) if d["kind"] == "PersistentVolumeClaim"]


def test_the_distributed_example_ships_its_priority_class_and_claim() -> None:
    kinds = [d["kind"] for d in docs_of(EXAMPLES / "trainingjob-distributed.yaml")]
    assert kinds == ["PriorityClass", "PersistentVolumeClaim", "TrainingJob"]
    (claim,) = claims()
    # Four workers on four nodes write the same checkpoints.
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def fits(claim: Obj, volume: Obj) -> bool:
    """What the PersistentVolume controller asks of a volume for a claim without a class."""
    spec, offered = claim["spec"], volume["spec"]
    return (
        "storageClassName" not in spec
        and offered["storageClassName"] == ""
        and set(spec["accessModes"]) <= set(offered["accessModes"])
        and parse_quantity(spec["resources"]["requests"]["storage"])
        <= parse_quantity(offered["capacity"]["storage"])
    )


def test_every_claim_fits_a_simulated_volume_and_there_are_enough() -> None:
    volumes = nodepools.simulated_volumes(nodepools.DEFAULT_POOLS)
    assert len(volumes) >= len(claims())
    for claim in claims():
        assert all(fits(claim, v) for v in volumes), claim["metadata"]["name"]
    assert not fits(
        {"spec": {**claims()[0]["spec"], "resources": {"requests": {"storage": "20Ti"}}}},
        volumes[0],
    )


def matches(node_labels: dict[str, str], volume: Obj) -> bool:
    (term,) = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    return all(node_labels.get(e["key"]) in e["values"] for e in term["matchExpressions"])


def test_simulated_volumes_reach_simulated_nodes_only() -> None:
    volume = nodepools.simulated_volume(0)
    simulated = nodepools.node_manifest(nodepools.DEFAULT_POOLS[1], 0, beside_real=True)
    assert matches(simulated["metadata"]["labels"], volume)
    assert not matches({"kubernetes.io/hostname": "real-0", "kubernetes.io/os": "linux"}, volume)
    assert {
        v["metadata"]["name"] for v in nodepools.simulated_volumes(nodepools.DEFAULT_POOLS)
    } == {f"simulated-volume-{i}" for i in range(nodepools.SIMULATED_VOLUMES)}
    assert nodepools.simulated_volumes(()) == []
