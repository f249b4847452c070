"""Kubeflow training jobs and GPU Jobs into TrainingJobs: the golden corpus, and the rules each
conversion keeps (valid resources, a note for every field not carried over, one-line errors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stratus.api.trainingjob import TrainingJobSpec
from stratus.convert import dispatch, inputs, kubeflow

ROOT = Path(__file__).resolve().parents[3]
CORPUS = ROOT / "tests" / "convert_corpus" / "kubeflow"
INPUTS = sorted(CORPUS.glob("*.yaml"))


def _convert(path: Path) -> list[dict[str, Any]]:
    relative = str(path.relative_to(ROOT))
    return [c.as_dict() for c in dispatch.convert(inputs.read([relative]))]


@pytest.mark.parametrize("path", INPUTS, ids=[p.name for p in INPUTS])
def test_golden(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    expected = json.loads(path.with_suffix(".expected.json").read_text())
    assert _convert(path) == expected


def test_every_resource_validates_and_names_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    resources = [r for p in INPUTS for c in _convert(p) for r in c["resources"]]
    assert len(resources) >= 8
    for resource in resources:
        assert resource["apiVersion"] == "stratus.dev/v1alpha1"
        TrainingJobSpec.model_validate(resource["spec"])
        assert resource["metadata"]["annotations"]["stratus.dev/converted-from"]


def test_malformed_documents_fail_alone_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    out = _convert(CORPUS / "malformed.yaml")
    errors = {c["name"]: c["error"] for c in out if c["error"]}
    assert errors == {
        "no-replicas": "spec.pytorchReplicaSpecs: missing",
        "bad-replicas": "spec.pytorchReplicaSpecs.Worker.replicas: not a whole number: 'two'",
        "no-image": "spec.pytorchReplicaSpecs.Worker.template.spec.containers[pytorch].image: "
        "missing",
        "fractional-gpu": "spec.pytorchReplicaSpecs.Worker.template.spec.containers[pytorch]."
        "resources.limits.nvidia.com/gpu: not a whole number: 'half'",
        "not-a-workload": "no converter for v1 ConfigMap (nothing to do with it)",
        "": "not a Kubernetes object: a list",
    }
    assert all("\n" not in e for e in errors.values())
    (fine,) = [c for c in out if c["name"] == "still-fine"]
    assert fine["resources"][0]["spec"]["workers"] == 2


def _pytorchjob(**spec: Any) -> dict[str, Any]:
    worker = {
        "replicas": 2,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "pytorch",
                        "image": "example/train:1",
                        "resources": {"limits": {"nvidia.com/gpu": 4}},
                    }
                ]
            }
        },
    }
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "job"},
        "spec": {"pytorchReplicaSpecs": {"Worker": worker}, **spec},
    }


def test_unknown_fields_are_noted_not_dropped_silently() -> None:
    doc = _pytorchjob(futureField={"a": 1}, runPolicy={"newKnob": True})
    doc["extra"] = 1
    doc["metadata"]["generateName"] = "job-"
    (c,) = kubeflow.convert_pytorchjob(doc, "x")
    dropped = {n.field for n in c.notes if n.kind == "dropped"}
    assert {"extra", "spec.futureField", "spec.runPolicy.newKnob", "metadata.generateName"} <= (
        dropped
    )


def test_elastic_training_is_reported_as_not_offered() -> None:
    doc = _pytorchjob(elasticPolicy={"minReplicas": 1, "maxReplicas": 8})
    (c,) = kubeflow.convert_pytorchjob(doc, "x")
    (note,) = [n for n in c.notes if n.field == "spec.elasticPolicy"]
    assert note.kind == "dropped"
    assert "elastic training is not offered" in note.reason
    assert c.resources[0]["spec"]["workers"] == 2


def test_a_job_that_never_checkpointed_gets_a_todo_and_no_spot() -> None:
    doc = _pytorchjob()
    doc["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["nodeSelector"] = {
        "cloud.google.com/gke-spot": "true"
    }
    (c,) = kubeflow.convert_pytorchjob(doc, "x")
    (todo,) = [n for n in c.notes if n.field == "(checkpoint)"]
    assert todo.kind == "action"
    assert "spec.checkpoint" in todo.todo
    spec = c.resources[0]["spec"]
    assert spec["spot"] == {"enabled": False}
    assert "podTemplate" not in spec


def test_a_checkpoint_claim_becomes_the_checkpoint_location() -> None:
    doc = _pytorchjob()
    pod = doc["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    pod["volumes"] = [{"name": "checkpoints", "persistentVolumeClaim": {"claimName": "ckpts"}}]
    pod["containers"][0]["volumeMounts"] = [{"name": "checkpoints", "mountPath": "/ckpt"}]
    (c,) = kubeflow.convert_pytorchjob(doc, "x")
    spec = c.resources[0]["spec"]
    assert spec["checkpoint"] == {"persistentVolumeClaim": "ckpts", "mountPath": "/ckpt"}
    assert "volumes" not in spec
    assert "volumeMounts" not in spec
    assert not [n for n in c.notes if n.field == "(checkpoint)"]


def test_a_spec_the_models_refuse_is_an_error_naming_the_field() -> None:
    doc = _pytorchjob()
    doc["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["resources"][
        "limits"
    ]["nvidia.com/gpu"] = 128
    (c,) = kubeflow.convert_pytorchjob(doc, "x")
    assert c.resources == []
    assert c.error is not None
    assert c.error.startswith("spec.resources.gpu:")


def test_a_long_name_is_shortened_with_a_note() -> None:
    doc = _pytorchjob()
    doc["metadata"]["name"] = "a" * 60
    (c,) = kubeflow.convert_pytorchjob(doc, "x")
    assert c.resources[0]["metadata"]["name"] == "a" * 48
    assert c.resources[0]["metadata"]["annotations"]["stratus.dev/converted-from"] == (
        "PyTorchJob/" + "a" * 60
    )
    assert [n.kind for n in c.notes if n.field == "metadata.name"] == ["changed"]


def test_volcano_scheduling_and_queue_label() -> None:
    doc = _pytorchjob(runPolicy={"schedulingPolicy": {"queue": "research", "minAvailable": 2}})
    (c,) = kubeflow.convert_pytorchjob(doc, "x")
    assert c.resources[0]["spec"]["queueName"] == "research"
    doc["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "lq"}
    (c,) = kubeflow.convert_pytorchjob(doc, "x")
    assert c.resources[0]["spec"]["queueName"] == "lq"
    assert "labels" not in c.resources[0]["metadata"]


def test_tfjob_without_chief_or_workers_is_an_error() -> None:
    doc = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": "ps-only"},
        "spec": {"tfReplicaSpecs": {"PS": {"replicas": 1, "template": {"spec": {}}}}},
    }
    (c,) = kubeflow.convert_tfjob(doc, "x")
    assert c.error == "spec.tfReplicaSpecs: no Chief or Master or Worker replicas"


def test_not_a_mapping_is_an_error() -> None:
    (c,) = kubeflow.convert_job("text", "x")
    assert c.error == "not a Kubernetes object"


def test_a_job_read_back_from_a_cluster_sheds_what_the_server_stamped() -> None:
    doc = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"generateName": "train-", "uid": "u", "resourceVersion": "7"},
        "spec": {
            "template": {
                "metadata": {"labels": {"job-name": "train-x", "controller-uid": "u", "app": "t"}},
                "spec": {
                    "containers": [
                        {"image": "t:1", "resources": {"limits": {"nvidia.com/gpu": "2"}}}
                    ]
                },
            }
        },
        "status": {"succeeded": 1},
    }
    (c,) = kubeflow.convert_job(doc, "x")
    tj = c.resources[0]
    assert tj["metadata"]["name"] == "train"
    assert tj["spec"]["podTemplate"] == {"metadata": {"labels": {"app": "t"}}}
    assert tj["spec"]["resources"] == {"gpu": 2}
    assert sorted(n.field for n in c.notes) == ["(checkpoint)", "metadata.generateName"]
