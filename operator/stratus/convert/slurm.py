"""Slurm batch scripts into TrainingJobs.

One script becomes one TrainingJob: a node is a worker, the `#SBATCH` directives give its GPUs,
CPUs, memory and time limit, and the script body, less its directives and the lines that set up
the Slurm environment, runs as `bash -c <body>` in every worker. The launch line is rewritten for
Stratus: `srun` goes (one process per node) or becomes torchrun (several per node), torchrun's
rendezvous flags go (the operator sets PET_MASTER_ADDR, PET_NNODES, PET_NODE_RANK), and
`accelerate launch` reads the operator's MASTER_ADDR, NNODES and NODE_RANK. The last command is
exec'd so that the program, not bash, receives SIGTERM at preemption. `export X=literal` lines
become env, and the SLURM_* variables the body reads that Stratus can give are set."""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath

from pydantic import ValidationError

from stratus.api.common import API_VERSION
from stratus.api.trainingjob import KIND, MAX_NAME_LENGTH, TrainingJobSpec
from stratus.convert.report import Conversion, Manifest

SOURCE_KIND = "slurm batch script"
CONVERTED_FROM = "stratus.dev/converted-from"
# A Slurm script names no image: this one is reserved (.invalid never resolves), so the job
# cannot run before someone builds the real one.
PLACEHOLDER_REGISTRY = "registry.invalid"
MAX_GRACE_SECONDS = 3600

# Long name of each option, by every spelling sbatch accepts for it.
_SHORT = {
    "N": "nodes",
    "n": "ntasks",
    "c": "cpus-per-task",
    "G": "gpus",
    "t": "time",
    "a": "array",
    "p": "partition",
    "q": "qos",
    "A": "account",
    "C": "constraint",
    "J": "job-name",
    "o": "output",
    "e": "error",
    "i": "input",
    "D": "chdir",
    "d": "dependency",
    "w": "nodelist",
    "x": "exclude",
    "L": "licenses",
    "m": "distribution",
    "s": "oversubscribe",
    "H": "hold",
    "O": "overcommit",
    "k": "no-kill",
    "Q": "quiet",
    "v": "verbose",
    "W": "wait",
    "B": "extra-node-info",
    "F": "nodefile",
    "M": "clusters",
    "S": "core-spec",
}
# Options that take no value (a following word is the next option, not their value).
_FLAGS = {
    "requeue",
    "no-requeue",
    "exclusive",
    "hold",
    "overcommit",
    "oversubscribe",
    "no-kill",
    "quiet",
    "verbose",
    "wait",
    "contiguous",
    "use-min-nodes",
    "spread-job",
    "test-only",
    "parsable",
    "get-user-env",
    "ignore-pbs",
    "reboot",
    "export-file",
}
_OPERATOR_ENV = {
    "MASTER_ADDR",
    "MASTER_PORT",
    "WORLD_SIZE",
    "RANK",
    "NODE_RANK",
    "NNODES",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
}
_INDEX = {
    "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
}
# Slurm GPU names (gres types, constraint features) and the nvidia.com/gpu.product label the
# GPU feature discovery gives them; the reason says where the guess may be wrong.
_GPU_PRODUCTS: dict[str, tuple[str, str]] = {
    "h200": ("NVIDIA-H200", ""),
    "h100": ("NVIDIA-H100-80GB-HBM3", "H100 PCIe nodes are labelled NVIDIA-H100-PCIe"),
    "h100-80gb": ("NVIDIA-H100-80GB-HBM3", ""),
    "a100": ("NVIDIA-A100-SXM4-80GB", "A100s also come as 40GB and PCIe"),
    "a100-80gb": ("NVIDIA-A100-SXM4-80GB", "A100s also come as PCIe"),
    "a100-40gb": ("NVIDIA-A100-SXM4-40GB", "A100s also come as PCIe"),
    "a100-sxm4-80gb": ("NVIDIA-A100-SXM4-80GB", ""),
    "a100-sxm4-40gb": ("NVIDIA-A100-SXM4-40GB", ""),
    "l40s": ("NVIDIA-L40S", ""),
    "l40": ("NVIDIA-L40", ""),
    "l4": ("NVIDIA-L4", ""),
    "a10g": ("NVIDIA-A10G", ""),
    "a10": ("NVIDIA-A10", ""),
    "a40": ("NVIDIA-A40", ""),
    "t4": ("Tesla-T4", ""),
    "p100": ("Tesla-P100-PCIE-16GB", "P100s also come as SXM2"),
    "k80": ("Tesla-K80", ""),
    "a6000": ("NVIDIA-RTX-A6000", ""),
    "rtx-a6000": ("NVIDIA-RTX-A6000", ""),
    "a5000": ("NVIDIA-RTX-A5000", ""),
    "rtx8000": ("Quadro-RTX-8000", ""),
    "rtx6000": ("Quadro-RTX-6000", ""),
    "rtx3090": ("NVIDIA-GeForce-RTX-3090", ""),
    "rtx4090": ("NVIDIA-GeForce-RTX-4090", ""),
    "gh200": ("NVIDIA-GH200-480GB", ""),
    "b200": ("NVIDIA-B200", ""),
    "v100": ("Tesla-V100-SXM2-16GB", "V100s also come as 32GB and PCIe"),
    "v100-32gb": ("Tesla-V100-SXM2-32GB", "V100s also come as PCIe"),
}
_MEM_UNITS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
_TIME = re.compile(
    r"^(?:(?P<d>\d+)-(?P<dh>\d+)(?::(?P<dm>\d+)(?::(?P<ds>\d+))?)?"
    r"|(?P<h>\d+):(?P<hm>\d+):(?P<hs>\d+)"
    r"|(?P<m>\d+)(?::(?P<ms>\d+))?)$"
)
_OPERATOR = re.compile(r"\d*>>?|\d*>&\d*-?|&>>?|<<?|&&|\|\||\|&?|&|;;?")
# Redirections exec keeps (`exec prog > log 2>&1` writes the log as the script did).
_REDIRECTION = re.compile(r"\d*>&\d+|&>>?|\d*>>?|<")
_VAR = re.compile(r"\$\{?(SLURM_[A-Z_]+)")


class ScriptError(ValueError):
    """A directive too malformed to convert: the message names it."""


def convert_slurm(text: str, source: str) -> list[Conversion]:
    """The TrainingJob one Slurm batch script becomes, with a note for all it changed."""
    default_name = _dns_name(PurePath(_file_name(source)).stem or "slurm-job")
    conversion = Conversion(source=source, kind=SOURCE_KIND, name=default_name)
    try:
        _Converter(text, conversion).run()
    except ScriptError as e:
        conversion.resources = []
        conversion.error = str(e)
    return [conversion]


# The name the dispatcher (stratus.convert.dispatch) registers for scripts.
convert_script = convert_slurm


def _file_name(source: str) -> str:
    return PurePath(source.split("#", maxsplit=1)[0]).name


@dataclass
class _Line:
    number: int  # first physical line, from 1
    text: str  # physical lines joined, continuations included
    words: list[str] | None  # shell words, None when they do not split


@dataclass
class _Request:
    nodes: int | None = None
    ntasks: int | None = None
    tasks_per_node: int | None = None
    gpus_total: int | None = None
    gpus_per_node: int | None = None
    gpus_per_task: int | None = None
    gpu_type: str | None = None
    cpus_per_task: int | None = None
    cpus_per_gpu: int | None = None
    mem_mib: float | None = None
    mem_per_cpu_mib: float | None = None
    mem_per_gpu_mib: float | None = None
    seconds: int | None = None
    grace: int | None = None
    requeue: bool | None = None
    name: str | None = None
    account: str | None = None


@dataclass
class _Converter:
    text: str
    out: Conversion
    req: _Request = field(default_factory=_Request)
    env: list[Manifest] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    environments: list[str] = field(default_factory=list)
    image: str | None = None  # srun --container-image (Pyxis), when the script names one

    def run(self) -> None:
        lines = _logical_lines(self.text)
        body_start = self._directives(lines)
        workers, tasks, gpus = self._shape()
        body = self._body(lines[body_start:], workers, tasks, gpus)
        if not any(b.strip() and not b.strip().startswith("#") for b in body):
            raise ScriptError("no command after the #SBATCH lines: nothing to run")
        self._slurm_variables(body, workers, tasks, gpus)
        name = _dns_name(self.req.name) if self.req.name else self.out.name
        self.out.name = name
        spec = self._spec(body, workers, gpus)
        manifest: Manifest = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": name,
                "annotations": {CONVERTED_FROM: f"slurm/{_file_name(self.out.source)}"},
            },
            "spec": spec,
        }
        try:
            TrainingJobSpec.model_validate(spec)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ScriptError(f"the TrainingJob is not valid: spec.{where}: {err['msg']}") from None
        self.out.resources.append(manifest)

    # --- #SBATCH directives -------------------------------------------------------------------

    def _directives(self, lines: list[_Line]) -> int:
        """Read the directives; the index of the first line after them."""
        body_start = len(lines)
        directives = 0
        for i, line in enumerate(lines):
            stripped = line.text.strip()
            if i == 0 and stripped.startswith("#!"):
                continue
            if stripped.startswith("#SBATCH"):
                if body_start < len(lines):
                    self.out.note(
                        f"line {line.number}",
                        "dropped",
                        "sbatch ignores #SBATCH lines after the first command",
                        "move it above the first command if it was meant",
                    )
                    continue
                self._directive(line.number, stripped[len("#SBATCH") :])
                directives += 1
            elif body_start == len(lines) and stripped and not stripped.startswith("#"):
                body_start = i
        if not directives:
            self.out.note(
                "#SBATCH",
                "action",
                "no #SBATCH directives: one worker, no GPUs",
                "check it is a Slurm batch script, and set spec.resources",
            )
        return body_start

    def _directive(self, number: int, rest: str) -> None:
        try:
            words = _split(rest)
        except ValueError:
            raise ScriptError(f"line {number}: #SBATCH{rest}: unbalanced quotes") from None
        i = 0
        while i < len(words):
            word = words[i]
            i += 1
            value: str | None
            if word.startswith("--"):
                name, eq, value = word[2:].partition("=")
                if not eq:
                    value = None
            elif word.startswith("-") and len(word) > 1:
                name, value = _SHORT.get(word[1], word[1]), word[2:] or None
            else:
                raise ScriptError(f"line {number}: #SBATCH {word}: not an option")
            if value is None and name not in _FLAGS and i < len(words) and words[i][:1] != "-":
                value = words[i]
                i += 1
            spelled = f"#SBATCH {word}" + (
                f" {value}" if value is not None and "=" not in word else ""
            )
            self._option(f"line {number}: {spelled}", name, value or "")

    def _option(self, where: str, name: str, value: str) -> None:  # noqa: PLR0912
        req, note = self.req, self.out.note
        handler = _SIMPLE.get(name)
        if handler is not None:
            handler(self, where, value)
        elif name == "gres":
            for item in _split_list(value):
                if item.split(":")[0] != "gpu":
                    note(where, "dropped", f"generic resource {item!r} has no Stratus equivalent")
                    continue
                gpu_type, count = _gpu_count(where, item.removeprefix("gpu").lstrip(":"))
                req.gpus_per_node = count
                self._gpu_type(where, gpu_type)
        elif name in ("gpus", "gpus-per-node", "gpus-per-task"):
            gpu_type, count = _gpu_count(where, value)
            setattr(req, _field(name), count)
            self._gpu_type(where, gpu_type)
        elif name == "constraint":
            self._constraint(where, value)
        elif name == "signal":
            self._signal(where, value)
        elif name == "array":
            note(
                where,
                "dropped",
                "Stratus has no job arrays",
                "make one TrainingJob per array index, each with its SLURM_ARRAY_TASK_ID in env",
            )
        elif name in ("requeue", "no-requeue"):
            req.requeue = name == "requeue"
            if req.requeue:
                note(
                    where,
                    "changed",
                    "a requeueable job can be stopped and restarted: it runs on spot",
                    "make sure it resumes from its latest checkpoint (STRATUS_RESUME_FROM)",
                )
            else:
                note(where, "changed", "a job that must not be requeued runs on-demand, not spot")
        elif name in ("output", "error", "input", "open-mode"):
            note(
                where,
                "dropped",
                "a worker's output goes to its container log",
                "read it with kubectl logs, or ship logs with your cluster's log collector",
            )
        elif name.startswith("mail-"):
            note(
                where,
                "dropped",
                "Stratus sends no mail",
                "alert on the TrainingJob's phase or events instead",
            )
        elif name == "partition":
            note(
                where,
                "dropped",
                "Kubernetes has no partitions",
                "set spec.queueName to the Kueue LocalQueue that plays its part, if you use Kueue",
            )
        elif name == "qos":
            note(
                where,
                "dropped",
                "Kubernetes has no QOS for jobs",
                "set spec.priorityClassName to a PriorityClass of the same standing",
            )
        elif name == "exclusive":
            note(
                where,
                "dropped",
                "a worker gets the GPUs, CPUs and memory it requests, not a whole node",
                "request the whole node's GPUs and CPUs if the job needs it alone",
            )
        elif name == "time-min":
            note(where, "dropped", "Stratus has no minimum time for backfill")
        else:
            note(where, "dropped", f"--{name} has no Stratus equivalent")

    def _int(self, where: str, value: str, attr: str) -> None:
        if not value.isdigit() or int(value) < 1:
            raise ScriptError(f"{where}: not a positive count")
        setattr(self.req, attr, int(value))

    def _nodes(self, where: str, value: str) -> None:
        low, dash, high = value.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()) or int(low) < 1:
            raise ScriptError(f"{where}: not a node count (N or MIN-MAX)")
        self.req.nodes = int(low)
        if dash and high != low:
            self.out.note(
                where,
                "changed",
                f"Stratus runs a fixed number of workers: the minimum, {low}",
                "raise spec.workers if the job should use more",
            )

    def _memory(self, where: str, value: str, attr: str) -> None:
        match = re.fullmatch(r"(\d+)([KMGT]?)B?", value.upper())
        if not match:
            raise ScriptError(f"{where}: not a memory size (a number with K, M, G or T)")
        mib = int(match[1]) * _MEM_UNITS[match[2] or "M"]
        if mib == 0:
            self.out.note(
                where,
                "dropped",
                "--mem=0 asks for all of a node's memory; Kubernetes needs a figure",
                "set spec.resources.memory",
            )
            return
        setattr(self.req, attr, mib)

    def _time(self, where: str, value: str) -> None:
        if value.upper() in ("UNLIMITED", "INFINITE", "0"):
            return
        match = _TIME.match(value)
        if not match:
            raise ScriptError(
                f"{where}: not a Slurm time (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS)"
            )
        g = {k: int(v) for k, v in match.groupdict().items() if v is not None}
        seconds = (
            g.get("d", 0) * 86400
            + (g.get("dh", 0) + g.get("h", 0)) * 3600
            + (g.get("dm", 0) + g.get("hm", 0) + g.get("m", 0)) * 60
            + g.get("ds", 0)
            + g.get("hs", 0)
            + g.get("ms", 0)
        )
        self.req.seconds = seconds or None
        self.out.note(
            where,
            "changed",
            "Slurm's limit bounds one run; activeDeadlineSeconds bounds the whole TrainingJob, "
            "attempts after preemptions included",
            "allow for the time preemptions cost if it runs on spot",
        )

    def _account(self, where: str, value: str) -> None:
        if re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]", value):
            self.req.account = value
            self.out.note(where, "changed", "the Slurm account is now spec.costCenter, a label")
        else:
            self.out.note(where, "dropped", "not a valid label value for spec.costCenter")

    def _gpu_type(self, where: str, gpu_type: str | None) -> None:
        if gpu_type is None:
            return
        product = _GPU_PRODUCTS.get(gpu_type.lower().replace("_", "-"))
        if product is None:
            self.out.note(
                where,
                "dropped",
                f"GPU type {gpu_type!r} is not one Stratus knows",
                "set spec.resources.gpuType to the nodes' nvidia.com/gpu.product label",
            )
            return
        self.req.gpu_type = product[0]
        self.out.note(
            where,
            "changed",
            f"GPU type {gpu_type!r} is now gpuType {product[0]}"
            + (f" ({product[1]})" if product[1] else ""),
            "check it against your nodes' nvidia.com/gpu.product label",
        )

    def _constraint(self, where: str, value: str) -> None:
        features = [f for f in re.split(r"[&|,()\[\]*]+", value) if f]
        gpus = [f for f in features if f.lower().replace("_", "-") in _GPU_PRODUCTS]
        if len(gpus) == 1 and "|" not in value and "," not in value:
            self._gpu_type(where, gpus[0])
            others = [f for f in features if f not in gpus]
            if others:
                self.out.note(where, "dropped", f"node features {others} have no equivalent")
        else:
            self.out.note(
                where,
                "dropped",
                "node features other than one GPU type have no Stratus equivalent",
                "set spec.resources.gpuType, or pod affinity in spec.podTemplate",
            )

    def _signal(self, where: str, value: str) -> None:
        match = re.fullmatch(r"(?:[BR]+:)?(?:SIG)?([A-Z0-9]+)(?:@(\d+))?", value.upper())
        if not match:
            raise ScriptError(f"{where}: not a signal ([B:]SIG[@SECONDS])")
        seconds = int(match[2]) if match[2] else 60
        self.req.grace = min(seconds, MAX_GRACE_SECONDS)
        reason = f"the warning time is now terminationGracePeriodSeconds ({self.req.grace})"
        todo = ""
        if match[1] not in ("TERM", "15"):
            reason += f"; Stratus sends SIGTERM, not SIG{match[1]}"
            todo = "handle SIGTERM where the script or program handled SIG" + match[1]
        self.out.note(where, "changed", reason, todo)

    def _shape(self) -> tuple[int, int, int]:
        """Workers, tasks per worker, GPUs per worker."""
        r = self.req
        workers = r.nodes
        if workers is None:
            if r.ntasks and r.tasks_per_node:
                workers = math.ceil(r.ntasks / r.tasks_per_node)
            else:
                workers = 1
                if r.ntasks and r.ntasks > 1:
                    self.out.note(
                        "#SBATCH --ntasks",
                        "changed",
                        f"no node count: the {r.ntasks} tasks run on one worker",
                        "set spec.workers if they spread over nodes",
                    )
        tasks = r.tasks_per_node or (math.ceil(r.ntasks / workers) if r.ntasks else 1)
        gpus = 0
        if r.gpus_per_node is not None:
            gpus = r.gpus_per_node
        elif r.gpus_per_task is not None:
            gpus = r.gpus_per_task * tasks
        elif r.gpus_total is not None:
            gpus = math.ceil(r.gpus_total / workers)
            if gpus * workers != r.gpus_total:
                self.out.note(
                    "#SBATCH --gpus",
                    "changed",
                    f"{r.gpus_total} GPUs do not split evenly over {workers} workers: {gpus} each",
                )
        if gpus > 64:
            raise ScriptError(f"#SBATCH: {gpus} GPUs per node is more than a worker can have (64)")
        return workers, tasks, gpus

    # --- The body -----------------------------------------------------------------------------

    def _body(self, lines: list[_Line], workers: int, tasks: int, gpus: int) -> list[str]:
        kept: list[tuple[_Line, str]] = []
        launched = False
        for line in lines:
            words = line.words
            first = words[0] if words else ""
            where = f"line {line.number}"
            if first in ("module", "ml", "spack"):
                if len(words or []) > 2 and words and words[1] in ("load", "add"):
                    self.modules += words[2:]
                elif first == "ml" and words and len(words) > 1 and not words[1].startswith("-"):
                    self.modules += [w for w in words[1:] if w not in ("load", "purge")]
                self.out.note(
                    where,
                    "dropped",
                    f"{line.text.strip()!r}: a container loads no modules",
                    "build them into the image",
                )
                continue
            if self._environment(line, where):
                continue
            if first == "export" and words and self._export(words[1:], line, where):
                continue
            rewritten = self._launch(line, where, workers, tasks, gpus) if words else None
            if rewritten is not None:
                launched = True
                kept.append((line, rewritten))
                continue
            if first in ("source", ".") and len(words or []) > 1:
                self.out.note(
                    where,
                    "action",
                    f"it sources {(words or [])[1]} from the cluster's filesystem",
                    "put that file in the image at the same path, or its settings in spec.env",
                )
            elif words and words[0] in (
                "scontrol",
                "sinfo",
                "squeue",
                "sbatch",
                "scancel",
                "sacct",
            ):
                self.out.note(
                    where,
                    "action",
                    f"{words[0]} does not exist in a container",
                    "replace it: the operator sets MASTER_ADDR, NNODES and NODE_RANK",
                )
            elif re.search(r"\b(scontrol|sbatch|scancel)\b", line.text):
                self.out.note(
                    where,
                    "action",
                    "it calls Slurm commands a container does not have",
                    "replace them",
                )
            kept.append((line, line.text))
        if not launched and workers > 1:
            self.out.note(
                "launch line",
                "action",
                "no srun, torchrun or accelerate line found: the body runs once per worker",
                "check that is what the script meant",
            )
        return self._exec_last(kept)

    def _environment(self, line: _Line, where: str) -> bool:
        words = line.words or []
        text = line.text.strip()
        activating = (
            (len(words) >= 2 and words[0] in ("source", ".") and words[1].endswith("activate"))
            or (
                len(words) >= 2
                and words[0] in ("conda", "mamba", "micromamba")
                and words[1] in ("activate", "deactivate")
            )
            or (len(words) >= 2 and words[0] == "eval" and "shell." in text and "hook" in text)
            or (len(words) >= 2 and words[0] in ("source", ".") and "conda.sh" in words[1])
        )
        if not activating:
            return False
        self.environments.append(text)
        self.out.note(
            where,
            "dropped",
            f"{text!r}: the image is the environment",
            "install that environment's packages in the image, on its PATH",
        )
        return True

    def _export(self, assignments: list[str], line: _Line, where: str) -> bool:
        """Move `export X=literal` into env; False keeps the line (it computes something)."""
        pairs = [a.partition("=") for a in assignments]
        if not pairs or any(not eq for _, eq, _ in pairs):
            return False
        raw = line.text
        if "$" in raw or "`" in raw:
            names = [n for n, _, _ in pairs]
            if set(names) <= _OPERATOR_ENV:
                self.out.note(
                    where, "dropped", f"{', '.join(names)}: the operator sets it for each worker"
                )
                return True
            return False
        for name, _, value in pairs:
            if name in _OPERATOR_ENV:
                self.out.note(where, "dropped", f"{name}: the operator sets it for each worker")
            else:
                self.env.append({"name": name, "value": value})
        return True

    def _launch(self, line: _Line, where: str, workers: int, tasks: int, gpus: int) -> str | None:
        words = list(line.words or [])
        prefix: list[str] = []
        # exec, env assignments and wrappers before the launcher stay as written.
        while words and (words[0] in ("exec", "time", "nohup") or re.match(r"^\w+=", words[0])):
            prefix.append(words.pop(0))
        if not words:
            return None
        srun_tasks = None
        if words[0] == "srun":
            words, srun_tasks = self._strip_srun(words[1:], where, workers)
        elif words[0] in ("mpirun", "mpiexec") or (words[0] == "deepspeed" and workers > 1):
            self.out.note(
                where,
                "action",
                f"{words[0]} starts processes over ssh and a host list that Stratus does not give",
                "launch with torchrun (one per worker) instead",
            )
            return None
        launcher = _launcher(words)
        if launcher is None:
            if srun_tasks is None:
                return None
            per_node = srun_tasks or tasks
            if per_node > 1:
                words = ["torchrun", f"--nproc-per-node={per_node}", "--no-python", *words]
                self.out.note(
                    where,
                    "changed",
                    f"srun started {per_node} tasks per node; torchrun starts them now",
                    "read RANK, LOCAL_RANK and WORLD_SIZE, not SLURM_PROCID and SLURM_LOCALID",
                )
        elif launcher == "accelerate":
            words = self._accelerate(words, where, workers, gpus)
        else:
            words = self._torchrun(words, launcher, where, workers, gpus)
        return " ".join(_quote(w) for w in prefix + words)

    def _strip_srun(self, words: list[str], where: str, workers: int) -> tuple[list[str], int]:
        """The program srun starts, and the tasks per node srun asked for (0: the job's)."""
        flags = {
            "-l",
            "--label",
            "-u",
            "--unbuffered",
            "--exclusive",
            "--overlap",
            "--no-kill",
            "-K",
            "--kill-on-bad-exit",
            "-v",
            "--verbose",
            "-Q",
            "--quiet",
        }
        shape: dict[str, int] = {}
        dropped: list[str] = []
        while words and words[0].startswith("-"):
            word = words.pop(0)
            if word.startswith("--"):
                name, eq, value = word.partition("=")
            else:
                name, value = word[:2], word[2:]
                eq = "=" if value else ""
            spelled = word
            # -N 2 and --nodes 2 take the next word; -N2, --nodes=2 and flags do not.
            if not eq and name not in flags and words and not words[0].startswith("-"):
                value = words.pop(0)
                spelled = f"{word} {value}"
            long_name = {"-N": "--nodes", "-n": "--ntasks"}.get(name, name)
            if long_name in ("--nodes", "--ntasks", "--ntasks-per-node") and value.isdigit():
                shape[long_name] = int(value)
            elif name == "--container-image" and value and not re.search(r"^[/.~]|\.sqsh$", value):
                # Pyxis names the image as registry#repository:tag.
                self.image = value.replace("#", "/", 1)
            elif name not in ("-l", "--label", "-u", "--unbuffered"):
                dropped.append(spelled)
        if dropped:
            self.out.note(
                where, "dropped", f"srun options {' '.join(dropped)}: the job's shape applies"
            )
        tasks = shape.get("--ntasks-per-node", 0)
        if not tasks and "--ntasks" in shape:
            tasks = math.ceil(shape["--ntasks"] / shape.get("--nodes", workers))
        return words, tasks

    def _torchrun(
        self, words: list[str], launcher: str, where: str, workers: int, gpus: int
    ) -> list[str]:
        head = ["torchrun"] if launcher == "torchrun" else words[:3]
        rest = words[1:] if launcher == "torchrun" else words[3:]
        keep: list[str] = []
        dropped: list[str] = []
        rendezvous = (
            "nnodes",
            "node-rank",
            "master-addr",
            "master-port",
            "rdzv-backend",
            "rdzv-endpoint",
            "rdzv-id",
            "rdzv-conf",
            "standalone",
        )
        flags = ("standalone", "no-python", "run-path", "module", "m", "use-env")
        nproc: str | None = None
        while rest and rest[0].startswith("-") and rest[0] != "--":
            word = rest.pop(0)
            name, eq, value = word.lstrip("-").partition("=")
            name = name.replace("_", "-")
            if not eq and name not in flags and rest:
                value = rest.pop(0)
                spelled = f"{word} {value}"
            else:
                spelled = word
            if name in rendezvous:
                dropped.append(spelled)
            elif name in ("nproc-per-node",):
                nproc = value
            elif name in ("m", "module"):
                keep.append(word)
                break
            else:
                keep.append(spelled if eq or name in flags else word)
                if not eq and name not in flags:
                    keep.append(value)
        if dropped:
            self.out.note(
                where,
                "changed",
                f"{' '.join(dropped)}: the operator gives torchrun its rendezvous "
                "(PET_MASTER_ADDR, PET_NNODES, PET_NODE_RANK)"
                if workers > 1
                else f"{' '.join(dropped)}: one worker runs torchrun --standalone",
            )
        standalone = ["--standalone"] if workers == 1 else []
        per_node = self._nproc(nproc, where, gpus)
        return [*head, *standalone, f"--nproc-per-node={per_node}", *keep, *rest]

    def _nproc(self, nproc: str | None, where: str, gpus: int) -> str:
        """torchrun's processes per worker: as written, or the GPUs where it read Slurm's."""
        if nproc in ("gpu", "auto") and gpus:
            return nproc
        if nproc is None or not nproc.isdigit():
            per_node = str(max(gpus, 1))
            if nproc is not None:
                self.out.note(
                    where, "changed", f"--nproc-per-node {nproc} is now {per_node}, the GPUs"
                )
            return per_node
        if gpus and int(nproc) != gpus:
            self.out.note(
                where,
                "action",
                f"--nproc-per-node {nproc} but {gpus} GPUs per worker",
                "check which is meant",
            )
        return nproc

    def _accelerate(self, words: list[str], where: str, workers: int, gpus: int) -> list[str]:
        rest = words[2:]
        valued = {
            "num-processes",
            "num-machines",
            "machine-rank",
            "main-process-ip",
            "main-process-port",
            "config-file",
            "mixed-precision",
            "rdzv-backend",
            "num-cpu-threads-per-process",
            "gpu-ids",
            "dynamo-backend",
            "deepspeed-config-file",
            "zero-stage",
            "gradient-accumulation-steps",
            "fsdp-sharding-strategy",
            "deepspeed-multinode-launcher",
        }
        replaced = {
            "num-processes",
            "num-machines",
            "machine-rank",
            "main-process-ip",
            "main-process-port",
            "rdzv-backend",
        }
        keep: list[str] = []
        dropped: list[str] = []
        while rest and rest[0].startswith("-"):
            word = rest.pop(0)
            name, eq, value = word.lstrip("-").partition("=")
            name = name.replace("_", "-")
            spelled = word
            if not eq and name in valued and rest:
                value = rest.pop(0)
                spelled = f"{word} {value}"
            if name in replaced:
                dropped.append(spelled)
            else:
                keep += [word] if eq or name not in valued else [word, value]
                if name in ("m", "module"):
                    break
        if dropped:
            self.out.note(
                where,
                "changed",
                f"{' '.join(dropped)}: now from the worker count and the operator's "
                "MASTER_ADDR, MASTER_PORT and NODE_RANK",
            )
        shape = [f"--num_processes={workers * max(gpus, 1)}", f"--num_machines={workers}"]
        if workers > 1:
            shape += [
                "--machine_rank=$NODE_RANK",
                "--main_process_ip=$MASTER_ADDR",
                "--main_process_port=$MASTER_PORT",
            ]
        return ["accelerate", "launch", *shape, *keep, *rest]

    def _exec_last(self, kept: list[tuple[_Line, str]]) -> list[str]:
        """The body's lines, the last command exec'd so that it receives SIGTERM itself."""
        body = [text for _, text in kept]
        traps = any(line.words and line.words[0] == "trap" for line, _ in kept)
        commands = [
            i
            for i, (line, _) in enumerate(kept)
            if line.words and line.text.strip() and not line.text.strip().startswith("#")
        ]
        if not commands:
            return body
        last_line, last = kept[commands[-1]]
        # Assignments before the command stay in front of exec (`exec A=1 prog` runs "A=1").
        assignments = re.match(r"^\s*(?:\w+=\S*\s+)*", last)
        lead = assignments[0] if assignments else ""
        program = [w for w in last_line.words or [] if not re.match(r"^\w+=", w)]
        heredoc = any("<<" in text for _, text in kept)
        simple = (
            not heredoc
            and program
            and program[0]
            not in (
                "exec",
                "time",
                "wait",
                "exit",
                "fi",
                "done",
                "}",
                "esac",
                "echo",
            )
        )
        if traps:
            self.out.note(
                "trap",
                "action",
                "the script traps signals: at preemption bash gets SIGTERM, its children not",
                "trap TERM and pass it on to the program",
            )
        elif simple and not re.search(r"[;&|]|\)$", _REDIRECTION.sub("", last)):
            body[commands[-1]] = lead + "exec " + last[len(lead) :]
        else:
            self.out.note(
                f"line {last_line.number}",
                "action",
                "the last command cannot be exec'd: at preemption bash gets SIGTERM",
                "make the program the last command, or trap TERM and pass it on",
            )
        return body

    def _slurm_variables(self, body: list[str], workers: int, tasks: int, gpus: int) -> None:
        r = self.req
        known: dict[str, Manifest] = {
            "SLURM_NNODES": {"value": str(workers)},
            "SLURM_JOB_NUM_NODES": {"value": str(workers)},
            "SLURM_NTASKS": {"value": str(workers * tasks)},
            "SLURM_NPROCS": {"value": str(workers * tasks)},
            "SLURM_NTASKS_PER_NODE": {"value": str(tasks)},
            "SLURM_GPUS_ON_NODE": {"value": str(gpus)},
            "SLURM_GPUS_PER_NODE": {"value": str(gpus)},
            "SLURM_NODEID": {"valueFrom": _INDEX},
        }
        if r.cpus_per_task:
            known["SLURM_CPUS_PER_TASK"] = {"value": str(r.cpus_per_task)}
        if tasks == 1:
            known["SLURM_PROCID"] = {"valueFrom": _INDEX}
            known["SLURM_LOCALID"] = {"value": "0"}
        text = "\n".join(body)
        if re.search(r"\$(\{)?[@*#1-9]", text):
            self.out.note(
                "arguments",
                "action",
                "the script reads the arguments sbatch passed it ($1, $@): bash -c gets none",
                "write them into spec.command",
            )
        names = sorted(set(_VAR.findall(text)))
        have = {e["name"] for e in self.env}
        unknown = []
        for name in names:
            if name in known and name not in have:
                self.env.append({"name": name, **known[name]})
            elif name not in known:
                unknown.append(name)
        if names and len(unknown) < len(names):
            self.out.note(
                "SLURM_*",
                "changed",
                "the SLURM_* variables the script reads that Stratus can give are set in env",
            )
        todo = {
            "SLURM_JOB_ID": "use the pod's name or STRATUS_ATTEMPT",
            "SLURM_ARRAY_TASK_ID": "make one TrainingJob per index with it in env",
            "SLURM_RESTART_COUNT": "STRATUS_ATTEMPT counts attempts from 1",
            "SLURM_SUBMIT_DIR": "the image's working directory replaces it",
            "SLURM_JOB_NODELIST": "MASTER_ADDR names the first worker",
        }
        for name in unknown:
            self.out.note(
                f"${name}",
                "action",
                "a Slurm variable Stratus does not set",
                todo.get(
                    name.replace("SLURM_JOBID", "SLURM_JOB_ID").replace(
                        "SLURM_NODELIST", "SLURM_JOB_NODELIST"
                    ),
                    "replace it",
                ),
            )

    # --- The TrainingJob ----------------------------------------------------------------------

    def _spec(self, body: list[str], workers: int, gpus: int) -> Manifest:
        r = self.req
        image = self._image()
        resources: Manifest = {"gpu": gpus}
        if r.gpu_type and gpus:
            resources["gpuType"] = r.gpu_type
        if not gpus:
            self.out.note("GPUs", "changed", "the script asks for no GPUs: the workers get none")
        cpus = self._cpus(gpus)
        if cpus:
            resources["cpu"] = str(cpus)
        memory = self._memory_total(cpus, gpus)
        if memory:
            resources["memory"] = memory
        spec: Manifest = {
            "image": image,
            "command": ["bash", "-c", "\n".join(body).strip() + "\n"],
            "workers": workers,
            "resources": resources,
        }
        if self.env:
            spec["env"] = self.env
        spot = bool(r.requeue)
        spec["spot"] = {"enabled": spot}
        if r.requeue is None:
            self.out.note(
                "spot",
                "action",
                "the script does not say whether it can be requeued: it runs on-demand",
                "set spec.spot.enabled once it resumes from its checkpoints",
            )
        self.out.note(
            "checkpoint",
            "action",
            "a Slurm job keeps its checkpoints on the cluster's shared filesystem",
            "set spec.checkpoint (a PersistentVolumeClaim or an s3:// uri) and write "
            "checkpoints under STRATUS_CHECKPOINT_DIR",
        )
        if r.grace is not None:
            spec["terminationGracePeriodSeconds"] = r.grace
        if r.seconds:
            spec["activeDeadlineSeconds"] = r.seconds
        if r.account:
            spec["costCenter"] = r.account
        return spec

    def _image(self) -> str:
        """The image: Pyxis's, or a placeholder with what to build."""
        image = self.image or f"{PLACEHOLDER_REGISTRY}/{_dns_name(self.out.name)}:todo"
        what = []
        if self.modules:
            what.append("the modules " + ", ".join(self.modules))
        if self.environments:
            what.append("the Python environment the script activated")
        if self.image:
            self.out.note(
                "image",
                "changed",
                f"srun --container-image: the image is {image}",
                "check the cluster can pull it"
                + (" and that it has " + " and ".join(what) if what else ""),
            )
        else:
            self.out.note(
                "image",
                "action",
                f"a Slurm script names no image: {image} is a placeholder",
                "build an image with the program"
                + (" and " + " and ".join(what) if what else " and what it needs")
                + ", and set spec.image",
            )
        return image

    def _cpus(self, gpus: int) -> int | None:
        r = self.req
        tasks = r.tasks_per_node or 1
        if r.cpus_per_task:
            return r.cpus_per_task * tasks
        if r.cpus_per_gpu and gpus:
            return r.cpus_per_gpu * gpus
        return None

    def _memory_total(self, cpus: int | None, gpus: int) -> str | None:
        r = self.req
        mib = r.mem_mib
        if mib is None and r.mem_per_cpu_mib is not None:
            mib = r.mem_per_cpu_mib * (cpus or r.tasks_per_node or 1)
        if mib is None and r.mem_per_gpu_mib is not None and gpus:
            mib = r.mem_per_gpu_mib * gpus
        if mib is None:
            return None
        whole = math.ceil(mib)
        return f"{whole // 1024}Gi" if whole % 1024 == 0 else f"{whole}Mi"


def _set(attr: str) -> Callable[[_Converter, str, str], None]:
    return lambda c, where, value: c._int(where, value, attr)


def _mem(attr: str) -> Callable[[_Converter, str, str], None]:
    return lambda c, where, value: c._memory(where, value, attr)


def _job_name(c: _Converter, where: str, value: str) -> None:
    c.req.name = value


_SIMPLE: dict[str, Callable[[_Converter, str, str], None]] = {
    "nodes": lambda c, where, value: c._nodes(where, value),
    "ntasks": _set("ntasks"),
    "ntasks-per-node": _set("tasks_per_node"),
    "cpus-per-task": _set("cpus_per_task"),
    "cpus-per-gpu": _set("cpus_per_gpu"),
    "mem": _mem("mem_mib"),
    "mem-per-cpu": _mem("mem_per_cpu_mib"),
    "mem-per-gpu": _mem("mem_per_gpu_mib"),
    "time": lambda c, where, value: c._time(where, value),
    "account": lambda c, where, value: c._account(where, value),
    "job-name": _job_name,
}


def _field(option: str) -> str:
    return {
        "gpus": "gpus_total",
        "gpus-per-node": "gpus_per_node",
        "gpus-per-task": "gpus_per_task",
    }[option]


def _gpu_count(where: str, value: str) -> tuple[str | None, int]:
    """`[type:]count` of --gres=gpu:..., --gpus and their kin."""
    value = value.split("(", maxsplit=1)[0]
    parts = value.split(":") if value else []
    if not parts:
        return None, 1
    if len(parts) > 2 or not parts[-1].isdigit():
        if len(parts) == 1 and not parts[0].isdigit() and re.fullmatch(r"[A-Za-z][\w-]*", parts[0]):
            return parts[0], 1
        raise ScriptError(f"{where}: not a GPU request ([TYPE:]COUNT)")
    return (parts[0] if len(parts) == 2 else None), int(parts[-1])


def _quote(word: str) -> str:
    """Quote a word again, keeping the $VARIABLES the script meant to expand and the shell's
    operators and redirections."""
    if _OPERATOR.fullmatch(word):
        return word
    if word == "$@":
        return '"$@"'
    redirect = re.fullmatch(r"(\d*>>?|&>>?|<)(.+)", word)
    if redirect:
        return redirect[1] + _quote(redirect[2])
    if "$" in word and not re.search(r'["\\`]', word):
        return f'"{word}"' if re.search(r"[^\w$={}./:,@%+-]", word) else word
    return shlex.quote(word)


def _split_list(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


def _launcher(words: list[str]) -> str | None:
    if not words:
        return None
    if PurePath(words[0]).name == "torchrun":
        return "torchrun"
    if (
        len(words) >= 3
        and re.fullmatch(r"python[0-9.]*", PurePath(words[0]).name)
        and words[1] == "-m"
        and words[2] in ("torch.distributed.run", "torch.distributed.launch")
    ):
        return "torch.distributed"
    if len(words) >= 2 and PurePath(words[0]).name == "accelerate" and words[1] == "launch":
        return "accelerate"
    return None


def _logical_lines(text: str) -> list[_Line]:
    """The script's lines, backslash continuations joined, each with its shell words."""
    out: list[_Line] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if raw.endswith("\\") and not raw.lstrip().startswith("#"):
            pending.append(raw[:-1])
            continue
        pending.append(raw)
        joined = " ".join(p.strip() if i else p.rstrip() for i, p in enumerate(pending))
        pending = []
        out.append(_Line(start, joined, _words(joined)))
    if pending:
        joined = " ".join(pending)
        out.append(_Line(start, joined, _words(joined)))
    return out


def _words(text: str) -> list[str] | None:
    """Shell words, None when they do not split."""
    if not text.strip() or text.strip().startswith("#"):
        return []
    try:
        return _split(text)
    except ValueError:
        return None


def _split(text: str) -> list[str]:
    """Shell words as bash splits them: a $(...) or $((...)) stays inside its word, and # starts
    a comment only at the start of a word."""
    hidden: list[str] = []
    out, i = [], 0
    while i < len(text):
        if text.startswith("$(", i):
            depth, j = 0, i + 1
            while j < len(text):
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                if depth == 0:
                    break
                j += 1
            hidden.append(text[i : j + 1])
            i = j + 1
        elif text[i] == "#" and i and not text[i - 1].isspace():
            hidden.append("#")
            i += 1
        else:
            out.append(text[i])
            i += 1
            continue
        out.append(f"\x00{len(hidden) - 1}\x00")
    words = shlex.split("".join(out), comments=True)
    return [re.sub(r"\x00(\d+)\x00", lambda m: hidden[int(m[1])], w) for w in words]


def _dns_name(raw: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = "job-" + name
    return name[:MAX_NAME_LENGTH].rstrip("-")
