"""`stratus assess` over Conversions built here in the shapes the converters make: strategy, GPU
needs, spot suitability and monthly cost per workload, the summary, and the golden Markdown and
JSON reports. STRATUS_UPDATE_GOLDEN=1 rewrites the golden files after a deliberate change."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from stratus.convert.assess import (
    Assessment,
    PriceFileError,
    PriceTable,
    as_json,
    assess,
    load_prices,
    render_markdown,
)
from stratus.convert.report import Conversion, Note
from tests import cases

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden"

PRICES = PriceTable.model_validate(
    {
        "currency": "EUR",
        "source": "test numbers",
        "defaultGpuType": "NVIDIA-A100-SXM4-80GB",
        "gpuHour": {
            "NVIDIA-H100-80GB-HBM3": {"spot": 3, "onDemand": 8},
            "NVIDIA-A100-SXM4-80GB": {"spot": 1.5, "onDemand": 4},
            "NVIDIA-L4": {"spot": 0.25, "onDemand": 1},
        },
        "trainingRunsPerMonth": 4,
        "defaultTrainingHours": 24,
    }
)


def example(name: str) -> dict[str, Any]:
    return cases.example(name)


def trainingjob(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stratus.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {"image": "ghcr.io/example/train:1", **spec},
    }


def inferenceservice(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stratus.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "image": "ghcr.io/example/server:1",
            "model": {"uri": "s3://models/m/v1"},
            **spec,
        },
    }


def conv(name: str, *resources: dict[str, Any], kind: str = "", **kw: Any) -> Conversion:
    return Conversion(
        source=kw.pop("source", f"{name}.yaml#1"),
        kind=kind or "kubeflow.org/v1 PyTorchJob",
        name=name,
        resources=list(resources),
        **kw,
    )


def by_name(a: Assessment) -> dict[str, Any]:
    return {r.name: r for r in a.workloads}


def corpus() -> list[Conversion]:
    """A varied set: each strategy, each spot verdict, an unpriced GPU type, a failed conversion."""
    return [
        conv("llama-finetune-spot", example("trainingjob-spot.yaml")),
        conv(
            "gpt-pretrain-4x8",
            example("trainingjob-distributed.yaml"),
            notes=[
                Note(
                    "spec.pytorchReplicaSpecs.Worker.restartPolicy",
                    "changed",
                    "Stratus restarts a failed attempt as a whole; preemptions restart at once",
                    "list retryable exit codes in spec.retry.retryableExitCodes",
                ),
                Note("spec.nprocPerNode", "changed", "Stratus does not set PET_NPROC_PER_NODE"),
            ],
        ),
        conv(
            "bert-elastic",
            trainingjob("bert-elastic", workers=2, resources={"gpu": 4}),
            notes=[
                Note(
                    "spec.elasticPolicy",
                    "dropped",
                    "elastic training is not offered yet",
                    "size workers for the run",
                ),
                Note("(checkpoint)", "action", "the job never checkpointed", "set spec.checkpoint"),
            ],
        ),
        conv(
            "broken.sbatch",
            kind="slurm batch script",
            source="jobs/broken.sbatch",
            error="#SBATCH --gres=gpu:lots: not a GPU count",
        ),
        conv(
            "sentiment",
            example("inferenceservice-canary.yaml"),
            kind="serving.kserve.io/v1beta1 InferenceService",
        ),
        conv(
            "eval-no-requeue",
            trainingjob(
                "eval-no-requeue",
                command=["python", "eval.py", "--resume-from", "/ckpt"],
                resources={"gpu": 1, "gpuType": "NVIDIA-L4"},
                activeDeadlineSeconds=1800,
            ),
            kind="slurm batch script",
            source="jobs/eval.sbatch",
            notes=[Note("#SBATCH --no-requeue", "dropped", "Stratus always restarts preemptions")],
        ),
        conv(
            "quick-sweep",
            trainingjob(
                "quick-sweep",
                resources={"gpu": 2, "gpuType": "NVIDIA-L4"},
                activeDeadlineSeconds=3600,
            ),
            kind="slurm batch script",
            source="jobs/sweep.sbatch",
            notes=[
                Note(
                    "#SBATCH --requeue",
                    "changed",
                    "a preempted attempt is restarted by Stratus, not requeued by Slurm",
                )
            ],
        ),
        conv(
            "b200-chat",
            inferenceservice("b200-chat", resources={"gpu": 8, "gpuType": "NVIDIA-B200"}),
            kind="serving.kserve.io/v1beta1 InferenceService",
        ),
    ]


@pytest.fixture(scope="module")
def assessed() -> Assessment:
    return assess(corpus(), PRICES)


def test_strategy_follows_the_notes(assessed: Assessment) -> None:
    rows = by_name(assessed)
    assert rows["llama-finetune-spot"].strategy == "move-as-is"
    assert rows["gpt-pretrain-4x8"].strategy == "adapt"
    assert rows["gpt-pretrain-4x8"].why == ["2 field(s) to review: 2 changed"]
    # Elastic training dropped is an essential part lost, not a field to tweak.
    assert rows["bert-elastic"].strategy == "rework"
    assert rows["bert-elastic"].why == [
        "dropped spec.elasticPolicy: elastic training is not offered yet"
    ]
    assert rows["broken.sbatch"].strategy == "rework"
    assert rows["broken.sbatch"].why == [
        "conversion failed: #SBATCH --gres=gpu:lots: not a GPU count"
    ]
    assert rows["broken.sbatch"].gpus is None
    assert rows["broken.sbatch"].cost is None
    # A dropped field that is not essential only asks for adapting.
    assert rows["eval-no-requeue"].strategy == "adapt"


@pytest.mark.parametrize(
    ("note", "strategy"),
    [
        (Note("line 4: #SBATCH -a 0-9", "dropped", "Stratus has no job arrays"), "rework"),
        (
            Note("line 5: #SBATCH -d afterok:1", "dropped", "--dependency has no equivalent"),
            "rework",
        ),
        (Note("spec.tfReplicaSpecs.PS", "dropped", "parameter servers"), "rework"),
        (Note("spec.predictor.transformer", "dropped", "no transformers"), "rework"),
        (Note("spec.template.spec.initContainers", "dropped", "no init containers"), "rework"),
        (Note("spec.template.spec.containers[1]", "dropped", "one container"), "rework"),
        (Note("line 6: #SBATCH --mail-type=END", "dropped", "Stratus sends no mail"), "adapt"),
        (Note("spec.template.spec.containers[0].image", "changed", "a new tag"), "adapt"),
        (Note("(checkpoint)", "action", "the job never checkpointed"), "adapt"),
    ],
)
def test_what_makes_a_workload_rework(note: Note, strategy: str) -> None:
    (row,) = assess([conv("j", trainingjob("j"), notes=[note])], PRICES).workloads
    assert row.strategy == strategy


def test_gpu_needs_and_the_default_type(assessed: Assessment) -> None:
    rows = by_name(assessed)
    pretrain = rows["gpt-pretrain-4x8"].gpus
    assert (pretrain.units, pretrain.per_unit, pretrain.total) == (4, 8, 32)
    assert pretrain.gpu_type == "NVIDIA-H100-80GB-HBM3"
    assert not pretrain.type_assumed
    elastic = rows["bert-elastic"].gpus
    assert (elastic.total, elastic.gpu_type, elastic.type_assumed) == (
        8,
        "NVIDIA-A100-SXM4-80GB",
        True,
    )
    serving = rows["sentiment"].gpus
    assert (serving.unit, serving.units, serving.total) == ("replica", 2, 2)


def test_spot_suitability(assessed: Assessment) -> None:
    rows = by_name(assessed)
    spot = {name: r.spot for name, r in rows.items() if r.spot}
    assert spot["llama-finetune-spot"].verdict == "suitable"
    assert spot["llama-finetune-spot"].checkpoints == "yes"
    assert spot["llama-finetune-spot"].interruptible == "yes"
    assert spot["llama-finetune-spot"].hours_assumed
    assert spot["gpt-pretrain-4x8"].hours_per_run == 72
    # Long, no checkpoint, nothing said of interruptions.
    elastic = spot["bert-elastic"]
    assert (elastic.verdict, elastic.checkpoints, elastic.interruptible) == (
        "after-changes",
        "no",
        "unknown",
    )
    # --no-requeue wins over a command that mentions resuming.
    eval_ = spot["eval-no-requeue"]
    assert (eval_.verdict, eval_.checkpoints, eval_.interruptible) == ("unsuitable", "hinted", "no")
    # An hour's run loses little to a preemption, and --requeue says it may be stopped.
    sweep = spot["quick-sweep"]
    assert (sweep.verdict, sweep.checkpoints, sweep.interruptible) == ("suitable", "no", "yes")
    assert spot["sentiment"].verdict == "suitable"
    assert spot["b200-chat"].verdict == "after-changes"


def test_hinted_checkpoints_need_changes() -> None:
    job = trainingjob(
        "resumable",
        env=[{"name": "CKPT_DIR", "value": "/data/ckpt"}],
        activeDeadlineSeconds=36000,
    )
    (row,) = assess([conv("resumable", job)], PRICES).workloads
    assert row.spot is not None
    assert (row.spot.verdict, row.spot.checkpoints) == ("after-changes", "hinted")
    assert "spec.checkpoint" in row.spot.reasons[0]


def test_monthly_cost(assessed: Assessment) -> None:
    rows = by_name(assessed)
    # 1 GPU x 24 h (assumed) x 4 runs.
    llama = rows["llama-finetune-spot"].cost
    assert (llama.gpu_hours, llama.on_demand, llama.spot) == (96, 768, 288)
    # 32 GPUs x 72 h x 4 runs.
    assert rows["gpt-pretrain-4x8"].cost.gpu_hours == 9216
    # 2 replicas x 730 h.
    sentiment = rows["sentiment"].cost
    assert (sentiment.gpu_hours, sentiment.on_demand, sentiment.spot) == (1460, 11680, 4380)
    b200 = rows["b200-chat"].cost
    assert (b200.on_demand, b200.spot) == (None, None)


def test_summary(assessed: Assessment) -> None:
    s = assessed.summary
    assert s.workloads == 8
    assert s.by_strategy == {"move-as-is": 3, "adapt": 3, "rework": 2}
    assert s.by_spot == {"suitable": 4, "after-changes": 2, "unsuitable": 1}
    assert s.gpus == 1 + 32 + 8 + 2 + 1 + 2 + 8
    assert s.gpus_by_type == {
        "NVIDIA-A100-SXM4-80GB": 8,
        "NVIDIA-B200": 8,
        "NVIDIA-H100-80GB-HBM3": 35,
        "NVIDIA-L4": 3,
    }
    assert s.unpriced == ["b200-chat"]
    on_demand = {
        "llama": 768.0,
        "pretrain": 9216 * 8.0,
        "elastic": 8 * 96 * 4.0,
        "sentiment": 11680.0,
        "eval": 0.5 * 4 * 1.0,
        "sweep": 2 * 4 * 1.0,
    }
    spot = {
        "llama": 288.0,
        "pretrain": 9216 * 3.0,
        "elastic": 8 * 96 * 1.5,
        "sentiment": 4380.0,
        "eval": 0.5 * 4 * 0.25,
        "sweep": 2 * 4 * 0.25,
    }
    assert s.on_demand == pytest.approx(sum(on_demand.values()))
    now = ("llama", "pretrain", "sentiment", "sweep")
    assert s.spot_now == pytest.approx(
        sum(spot[k] if k in now else on_demand[k] for k in on_demand)
    )
    # The unsuitable one stays on demand even after changes.
    assert s.spot_after_changes == pytest.approx(
        sum(on_demand[k] if k == "eval" else spot[k] for k in on_demand)
    )
    assert s.savings_after_changes > s.savings_now > 0


def test_a_resource_the_models_refuse_is_rework() -> None:
    bad = trainingjob("bad", workers=0)
    (row,) = assess([conv("bad", bad)], PRICES).workloads
    assert row.strategy == "rework"
    assert row.why[0].startswith("the TrainingJob made does not validate: spec.workers:")
    assert row.gpus is None
    assert row.cost is None


def test_conversions_making_several_or_no_workloads() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}}
    two = conv("pair", trainingjob("pre", resources={"gpu": 0}), trainingjob("post"), secret)
    only_secret = conv("creds", secret)
    rows = assess([two, only_secret], PRICES).workloads
    assert [(r.name, r.kind, r.strategy) for r in rows] == [
        ("pre", "TrainingJob", "move-as-is"),
        ("post", "TrainingJob", "move-as-is"),
        ("creds", None, "rework"),
    ]
    assert rows[0].cost is not None
    assert rows[0].cost.on_demand == 0
    assert rows[2].why == ["no TrainingJob or InferenceService was made"]


def test_the_sample_price_file_loads_and_says_it_is_illustrative() -> None:
    text = (EXAMPLES / "assess" / "prices.yaml").read_text()
    prices = load_prices(text)
    assert "ILLUSTRATIVE" in text
    assert "illustrative" in prices.source
    assert prices.default_gpu_type in prices.gpu_hour
    for price in prices.gpu_hour.values():
        assert price.spot < price.on_demand


def test_a_json_price_file_loads() -> None:
    doc = PRICES.model_dump(by_alias=True)
    assert load_prices(json.dumps(doc)) == PRICES


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"defaultGpuType": "NVIDIA-B200"}, "defaultGpuType NVIDIA-B200 has no gpuHour entry"),
        ({"gpuHour": {"NVIDIA-L4": {"spot": -1, "onDemand": 1}}}, "gpuHour.NVIDIA-L4.spot:"),
        ({"gpuHour": {"NVIDIA-L4": {"spot": "cheap", "onDemand": 1}}}, "gpuHour.NVIDIA-L4.spot:"),
        ({"trainingRunsPerMonth": 0}, "trainingRunsPerMonth:"),
        ({"spotPrice": 1}, "spotPrice: Extra inputs are not permitted"),
    ],
)
def test_a_bad_price_file_is_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    doc = copy.deepcopy(PRICES.model_dump(by_alias=True))
    doc.update(change)
    with pytest.raises(PriceFileError) as err:
        load_prices(yaml.safe_dump(doc), "prices.yaml")
    assert str(err.value).startswith("prices.yaml: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["- a list\n", "gpuHour: [\n", ""])
def test_a_price_file_that_is_not_a_mapping_is_refused(text: str) -> None:
    with pytest.raises(PriceFileError, match=r"^p\.yaml: "):
        load_prices(text, "p.yaml")


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("STRATUS_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def test_markdown_report_is_the_golden_one(assessed: Assessment) -> None:
    check_golden("assess.expected.md", render_markdown(assessed))


def test_json_report_is_the_golden_one(assessed: Assessment) -> None:
    doc = as_json(assessed)
    # Plain data: it survives a round trip through JSON unchanged.
    assert json.loads(json.dumps(doc)) == doc
    check_golden("assess.expected.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")


def test_a_document_too_broken_to_name_is_named_by_its_source() -> None:
    broken = Conversion("jobs/broken.yaml", "", "", error="not valid YAML or JSON")
    (row,) = assess([broken], PRICES).workloads
    assert (row.name, row.source_kind) == ("jobs/broken.yaml", "unknown kind")
    assert "| jobs/broken.yaml | unknown kind (jobs/broken.yaml) | rework |" in render_markdown(
        assess([broken], PRICES)
    )


def test_markdown_table_cells_cannot_break_the_table() -> None:
    c = conv("odd", trainingjob("odd"), source="dir/a|b.yaml#1")
    md = render_markdown(assess([c], PRICES))
    row = next(line for line in md.splitlines() if line.startswith("| odd |"))
    assert "a\\|b.yaml" in row
    assert row.count(" | ") == 6
