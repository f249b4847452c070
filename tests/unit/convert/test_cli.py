"""`stratus convert` and `stratus assess` end to end in one process: inputs, dispatch, report,
written resources, exit codes, and the dry run against a stand-in API."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from stratus import cli
from stratus.convert import dispatch, inputs
from stratus.convert.inputs import Document
from stratus.convert.report import Conversion

ROOT = Path(__file__).resolve().parents[3]
CORPUS = ROOT / "tests" / "convert_corpus" / "kubeflow"
PRICES = ROOT / "examples" / "assess" / "prices.yaml"


def test_convert_writes_one_file_per_resource(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["convert", str(CORPUS / "pytorchjob-mnist.yaml"), "-o", str(tmp_path)])
    assert code == 0
    written = yaml.safe_load((tmp_path / "trainingjob-pytorch-simple.yaml").read_text())
    assert written["kind"] == "TrainingJob"
    assert written["spec"]["workers"] == 2
    out = capsys.readouterr().out
    assert "-> TrainingJob/kubeflow/pytorch-simple" in out
    assert "1 documents: 1 converted into 1 resources, 0 failed" in out


def test_stdin_to_stdout_puts_the_report_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO((CORPUS / "trainjob.yaml").read_text()))
    code = cli.main(["convert", "-", "-o", "-", "--report", "json"])
    captured = capsys.readouterr()
    resources = list(yaml.safe_load_all(captured.out))
    assert [r["metadata"]["name"] for r in resources] == ["pytorch-fashion-mnist", "llm-finetune"]
    report = json.loads(captured.err)
    assert report["summary"] == {
        "documents": 2,
        "converted": 2,
        "failed": 0,
        "resources": 2,
        "notes": report["summary"]["notes"],
    }
    assert [c["source"] for c in report["conversions"]] == ["<stdin>#1", "<stdin>#2"]
    assert code == 0


def test_a_directory_converts_everything_and_lists_each_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli.main(["convert", str(CORPUS)])
    out = capsys.readouterr().out
    assert code == 1
    assert "malformed-yaml.yaml: unknown: ERROR not valid YAML or JSON" in out
    assert "malformed.yaml#3: kubeflow.org/v1 PyTorchJob still-fine -> TrainingJob/still-fine" in (
        out
    )
    assert ".expected.json" not in out
    assert out.count("ERROR") == 9


def test_assess_reads_the_same_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["assess", str(CORPUS / "pytorchjob-elastic-llm.yaml"), "--prices", str(PRICES)]
    )
    assert code == 0
    assert "llama3-sft-elastic" in capsys.readouterr().out
    mnist = str(CORPUS / "pytorchjob-mnist.yaml")
    code = cli.main(["assess", mnist, "--prices", str(PRICES), "--output", "json"])
    assert code == 0
    body = json.loads(capsys.readouterr().out)
    assert [w["name"] for w in body["workloads"]] == ["pytorch-simple"]


def test_assess_refuses_a_bad_price_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("- not a mapping\n")
    assert cli.main(["assess", str(CORPUS / "tfjob-ps.yaml"), "--prices", str(prices)]) == 1
    assert "prices.yaml" in capsys.readouterr().err


class FakeCustomObjects:
    """Accepts every resource but one, as an API server would reject it on dry run."""

    def __init__(self, _api: object) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def create_namespaced_custom_object(self, *args: Any, dry_run: str) -> None:
        assert dry_run == "All"
        group, version, namespace, plural, body = args
        assert (group, version, plural) == ("stratus.dev", "v1alpha1", "trainingjobs")
        if body["metadata"]["name"] == "llm-finetune":
            exc = ApiException(status=422, reason="Unprocessable Entity")
            exc.body = json.dumps({"message": f"{namespace}: spec.workers: Invalid value"})
            raise exc


def test_dry_run_lists_every_rejected_resource(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(config, "new_client_from_config", lambda config_file: object())
    monkeypatch.setattr(client, "CustomObjectsApi", FakeCustomObjects)
    kubeconfig = tmp_path / "kubeconfig"
    code = cli.main(
        ["convert", str(CORPUS / "trainjob.yaml"), "--dry-run-against", str(kubeconfig)]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "DRY RUN FAILED TrainingJob/-/llm-finetune: default: spec.workers: Invalid value" in out
    assert "server-side dry run: 1 of 2 resources rejected" in out


def test_scripts_are_told_apart_from_yaml() -> None:
    assert inputs.is_script("job.sbatch", "echo")
    assert inputs.is_script("run", "#!/bin/bash\n#SBATCH --gres=gpu:4\nsrun python t.py\n")
    assert not inputs.is_script("job.yaml", "apiVersion: v1\nkind: Pod\n")
    (doc,) = inputs.parse("#!/bin/bash\n#SBATCH -N 2\n", "<stdin>")
    assert doc.content == "#!/bin/bash\n#SBATCH -N 2\n"


def test_a_kubernetes_list_stands_for_its_items() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n- {kind: A}\n- {kind: B}\n"
    assert [d.content for d in inputs.parse(text, "f")] == [{"kind": "A"}, {"kind": "B"}]


def test_a_converter_not_landed_yet_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(dispatch.REGISTRY, ("example.com", "Thing"), "stratus.convert.nope:f")
    doc = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}}
    (c,) = dispatch.convert([Document("f#1", doc)])
    assert c.error == "no converter for example.com/v1 Thing yet"


def test_a_converter_that_raises_fails_only_its_document(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(doc: dict[str, Any], source: str) -> list[Conversion]:
        raise ValueError("spec.x: bad")

    monkeypatch.setattr(dispatch, "load", lambda target: boom)
    doc = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "p"}}
    (c,) = dispatch.convert([Document("f#1", doc)])
    assert c.error == "cannot convert: spec.x: bad"
    assert c.name == "p"


def test_analysis_templates_go_to_the_rollouts_that_name_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    def rollout(doc: dict[str, Any], source: str, templates: list[Any]) -> list[Conversion]:
        seen["templates"] = templates
        return [Conversion(source, "Rollout", doc["metadata"]["name"])]

    monkeypatch.setattr(dispatch, "load", lambda target: rollout)
    template = {"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate"}
    used = {**template, "metadata": {"name": "success-rate"}}
    unused = {**template, "metadata": {"name": "latency"}}
    ro = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {
            "strategy": {
                "canary": {
                    "steps": [{"analysis": {"templates": [{"templateName": "success-rate"}]}}]
                }
            }
        },
    }
    out = dispatch.convert([Document("a", used), Document("b", ro), Document("c", unused)])
    assert seen["templates"] == [used, unused]
    assert [n.kind for n in out[0].notes] == ["changed"]
    assert "Rollout web" in out[0].notes[0].reason
    assert [n.kind for n in out[2].notes] == ["dropped"]
