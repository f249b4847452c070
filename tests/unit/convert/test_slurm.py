"""Slurm batch scripts into TrainingJobs: golden outputs for the corpus in
tests/convert_corpus/slurm, and the rules behind them one by one.

STRATUS_UPDATE_GOLDEN=1 rewrites the .expected.json files; review their diff before committing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stratus.api.trainingjob import TrainingJobSpec
from stratus.convert.report import Conversion
from stratus.convert.slurm import convert_slurm
from tests.unit.convert.golden import assert_golden

CORPUS = Path(__file__).parents[2] / "convert_corpus" / "slurm"
SCRIPTS = sorted(CORPUS.glob("*.sbatch"))


def _convert(text: str, source: str = "job.sbatch") -> Conversion:
    (conversion,) = convert_slurm(text, source)
    return conversion


def _spec(text: str) -> dict[str, Any]:
    conversion = _convert(text)
    assert conversion.error is None, conversion.error
    spec: dict[str, Any] = conversion.resources[0]["spec"]
    return spec


def _script(*lines: str) -> str:
    return "\n".join(["#!/bin/bash", *lines]) + "\n"


def test_the_corpus_is_there() -> None:
    assert len(SCRIPTS) >= 10


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_golden(path: Path) -> None:
    got = [c.as_dict() for c in convert_slurm(path.read_text(), path.name)]
    assert_golden(got, path)
    for conversion in got:
        for resource in conversion["resources"]:
            TrainingJobSpec.model_validate(resource["spec"])


@pytest.mark.parametrize(
    ("time", "seconds"),
    [
        ("30", 1800),
        ("30:15", 1815),
        ("02:30:00", 9000),
        ("2-12", 216000),
        ("1-02:03", 93780),
        ("1-02:03:04", 93784),
    ],
)
def test_every_slurm_time_format_is_the_deadline(time: str, seconds: int) -> None:
    assert (
        _spec(_script(f"#SBATCH --time={time}", "python t.py"))["activeDeadlineSeconds"] == seconds
    )
    assert _spec(_script(f"#SBATCH -t {time}", "python t.py"))["activeDeadlineSeconds"] == seconds


def test_no_time_limit_is_no_deadline() -> None:
    assert "activeDeadlineSeconds" not in _spec(_script("#SBATCH --time=UNLIMITED", "python t.py"))


@pytest.mark.parametrize(
    "directives",
    [
        ["--gres=gpu:4"],
        ["--gres gpu:4"],
        ["--gpus-per-node=4"],
        ["-G 8", "-N 2"],
        ["--gpus=8", "--nodes=2"],
        ["--gpus-per-task=1", "--ntasks-per-node=4"],
        ["--gres=gpu:a100:4,tmpfs:10G"],
    ],
)
def test_gpus_in_all_their_spellings(directives: list[str]) -> None:
    spec = _spec(_script(*(f"#SBATCH {d}" for d in directives), "python t.py"))
    assert spec["resources"]["gpu"] == 4


def test_memory_units_and_per_cpu_and_per_gpu() -> None:
    assert _spec(_script("#SBATCH --mem=512K", "true"))["resources"]["memory"] == "1Mi"
    assert _spec(_script("#SBATCH --mem=1500", "true"))["resources"]["memory"] == "1500Mi"
    assert _spec(_script("#SBATCH --mem=2T", "true"))["resources"]["memory"] == "2048Gi"
    per_cpu = _spec(_script("#SBATCH -c 8", "#SBATCH --mem-per-cpu=4G", "true"))
    assert per_cpu["resources"] == {"gpu": 0, "cpu": "8", "memory": "32Gi"}
    per_gpu = _spec(_script("#SBATCH --gres=gpu:2", "#SBATCH --mem-per-gpu=80G", "true"))
    assert per_gpu["resources"]["memory"] == "160Gi"


def test_a_malformed_directive_is_one_line_naming_it() -> None:
    conversion = _convert(_script("#SBATCH --gres=gpu:4", "#SBATCH --mem=lots", "python t.py"))
    assert conversion.resources == []
    assert conversion.error == (
        "line 3: #SBATCH --mem=lots: not a memory size (a number with K, M, G or T)"
    )


def test_workers_come_from_nodes_or_tasks() -> None:
    assert _spec(_script("#SBATCH -N3", "true"))["workers"] == 3
    tasks = _script("#SBATCH --ntasks=8", "#SBATCH --ntasks-per-node=4", "true")
    assert _spec(tasks)["workers"] == 2
    ranged = _convert(_script("#SBATCH --nodes=2-4", "true"))
    assert ranged.resources[0]["spec"]["workers"] == 2
    assert any("minimum, 2" in n.reason for n in ranged.notes)


def test_multi_node_torchrun_gets_its_rendezvous_from_the_operator() -> None:
    spec = _spec(
        _script(
            "#SBATCH --nodes=2",
            "#SBATCH --gres=gpu:8",
            "export MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n 1)",
            "srun torchrun --nnodes $SLURM_NNODES --nproc_per_node 8 \\",
            "  --rdzv_backend=c10d --rdzv_endpoint=$MASTER_ADDR:29500 train.py --lr 3e-4",
        )
    )
    assert spec["command"] == [
        "bash",
        "-c",
        "exec torchrun --nproc-per-node=8 train.py --lr 3e-4\n",
    ]
    assert spec["workers"] == 2


def test_single_node_torchrun_stands_alone() -> None:
    spec = _spec(_script("#SBATCH --gpus=2", "torchrun --nproc_per_node=2 t.py"))
    assert spec["command"][2] == "exec torchrun --standalone --nproc-per-node=2 t.py\n"


def test_srun_with_tasks_per_node_becomes_torchrun() -> None:
    conversion = _convert(
        _script("#SBATCH -N 2", "#SBATCH --ntasks-per-node=4", "srun -l python t.py")
    )
    spec = conversion.resources[0]["spec"]
    assert spec["command"][2] == "exec torchrun --nproc-per-node=4 --no-python python t.py\n"
    assert any("SLURM_PROCID" in n.todo for n in conversion.notes)


def test_accelerate_reads_the_operators_rendezvous() -> None:
    spec = _spec(
        _script(
            "#SBATCH -N 2",
            "#SBATCH --gres=gpu:4",
            "accelerate launch --num_processes 8 --multi_gpu --main_process_ip $HEAD t.py",
        )
    )
    assert spec["command"][2] == (
        "exec accelerate launch --num_processes=8 --num_machines=2 --machine_rank=$NODE_RANK "
        "--main_process_ip=$MASTER_ADDR --main_process_port=$MASTER_PORT --multi_gpu t.py\n"
    )


def test_environment_lines_become_env_and_notes() -> None:
    conversion = _convert(
        _script(
            "module load cuda/12.1",
            "source .venv/bin/activate",
            "conda activate train",
            "export A=1 B='two words'",
            "export C=$HOME/x",
            "python t.py",
        )
    )
    spec = conversion.resources[0]["spec"]
    assert spec["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "two words"}]
    assert spec["command"][2] == "export C=$HOME/x\nexec python t.py\n"
    image = next(n for n in conversion.notes if n.field == "image")
    assert image.kind == "action"
    assert "cuda/12.1" in image.todo
    assert spec["image"] == "registry.invalid/job:todo"


def test_slurm_variables_the_body_reads_are_given() -> None:
    spec = _spec(
        _script(
            "#SBATCH -N 2",
            "#SBATCH -c 6",
            "python t.py --nodes $SLURM_NNODES --rank ${SLURM_NODEID} --cpus $SLURM_CPUS_PER_TASK",
        )
    )
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in spec["env"]}
    assert env["SLURM_NNODES"] == "2"
    assert env["SLURM_CPUS_PER_TASK"] == "6"
    assert "job-completion-index" in json.dumps(env["SLURM_NODEID"])


def test_requeue_runs_on_spot_and_signal_is_the_grace_period() -> None:
    conversion = _convert(
        _script("#SBATCH --requeue", "#SBATCH --signal=B:USR1@300", "python t.py")
    )
    spec = conversion.resources[0]["spec"]
    assert spec["spot"] == {"enabled": True}
    assert spec["terminationGracePeriodSeconds"] == 300
    assert any("not SIGUSR1" in n.reason for n in conversion.notes)
    assert _spec(_script("#SBATCH --no-requeue", "true"))["spot"] == {"enabled": False}


def test_a_gpu_constraint_is_the_gpu_type() -> None:
    spec = _spec(_script("#SBATCH --gres=gpu:1", "#SBATCH -C h100", "true"))
    assert spec["resources"]["gpuType"] == "NVIDIA-H100-80GB-HBM3"
    either = _convert(_script("#SBATCH --gres=gpu:1", "#SBATCH -C 'a100|h100'", "true"))
    assert "gpuType" not in either.resources[0]["spec"]["resources"]
    assert any(n.field.endswith("-C a100|h100") for n in either.notes)


def test_every_directive_is_accounted_for() -> None:
    """Each directive either shapes the spec or has a note naming its line."""
    for path in SCRIPTS:
        conversion = _convert(path.read_text(), path.name)
        if conversion.error:
            continue
        noted = {n.field.split(":")[0] for n in conversion.notes}
        shaping = ("nodes", "ntasks", "gres", "gpus", "cpus", "mem", "job-name", "-N", "-c", "-J")
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.startswith("#SBATCH") and not any(s in line for s in shaping):
                assert f"line {number}" in noted, f"{path.name}:{number} {line}"


def test_name_from_job_name_or_file() -> None:
    assert _convert(_script("#SBATCH -J My_Run.v2", "true")).name == "my-run-v2"
    assert _convert(_script("true"), "dir/7b-train.sbatch").name == "job-7b-train"


def test_a_one_task_srun_step_stays_one_process() -> None:
    spec = _spec(
        _script("#SBATCH --ntasks-per-node=4", "srun -n1 mkdir -p out", "srun python t.py")
    )
    assert spec["command"][2] == (
        "mkdir -p out\nexec torchrun --nproc-per-node=4 --no-python python t.py\n"
    )


def test_the_last_command_is_execd_only_where_bash_allows() -> None:
    assert _spec(_script("A=1 B=2 python t.py"))["command"][2] == "A=1 B=2 exec python t.py\n"
    heredoc = _convert(_script("cat > c.yaml <<EOF", "lr: 1", "EOF"))
    assert heredoc.resources[0]["spec"]["command"][2] == "cat > c.yaml <<EOF\nlr: 1\nEOF\n"
    assert any("cannot be exec'd" in n.reason for n in heredoc.notes)
    timed = _spec(_script("time python t.py"))
    assert timed["command"][2] == "time python t.py\n"


def test_torch_distributed_launch_keeps_its_flags() -> None:
    spec = _spec(
        _script(
            "#SBATCH --gres=gpu:2",
            "python -m torch.distributed.launch --use_env --nproc_per_node=2 t.py --nnodes 9",
        )
    )
    assert spec["command"][2] == (
        "exec python -m torch.distributed.launch --standalone --nproc-per-node=2 --use_env "
        "t.py --nnodes 9\n"
    )


def test_a_pyxis_container_image_is_the_image() -> None:
    conversion = _convert(
        _script("#SBATCH -N 2", "srun --container-image=nvcr.io#nvidia/pytorch:24.01 python t.py")
    )
    assert conversion.resources[0]["spec"]["image"] == "nvcr.io/nvidia/pytorch:24.01"
    assert next(n for n in conversion.notes if n.field == "image").kind == "changed"


def test_a_script_with_nothing_to_run_is_an_error() -> None:
    conversion = _convert(_script("#SBATCH --gres=gpu:1", "module load cuda"))
    assert conversion.error == "no command after the #SBATCH lines: nothing to run"


def test_operators_and_redirections_survive_the_rewrite() -> None:
    spec = _spec(
        _script(
            "#SBATCH --ntasks-per-node=2",
            "srun python a.py > a.log 2>&1 &",
            "srun python b.py >b.log 2>&1",
        )
    )
    assert spec["command"][2] == (
        "torchrun --nproc-per-node=2 --no-python python a.py > a.log 2>&1 &\n"
        "exec torchrun --nproc-per-node=2 --no-python python b.py >b.log 2>&1\n"
    )


def test_a_script_without_directives_says_so() -> None:
    conversion = _convert("python t.py\n")
    assert conversion.resources[0]["spec"]["resources"] == {"gpu": 0}
    assert any(n.field == "#SBATCH" and n.kind == "action" for n in conversion.notes)


def test_arguments_and_sourced_files_are_noted() -> None:
    conversion = _convert(_script("source ./env.sh", 'torchrun t.py "$@"'))
    fields = {n.field for n in conversion.notes if n.kind == "action"}
    assert {"line 2", "arguments"} <= fields
