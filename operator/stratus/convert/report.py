"""What a conversion gives back: the Stratus resources made from one source document, and a
note for everything in it that was not carried over as it was, so nothing is dropped silently."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Manifest = dict[str, Any]
# dropped: not carried over; changed: carried over with a different meaning or value;
# action: nothing was lost, but a person must do something (build an image, make a Secret).
NoteKind = Literal["dropped", "changed", "action"]


@dataclass(frozen=True)
class Note:
    """One field of the source, what became of it, and what to do about it."""

    field: str  # the source field's path, e.g. spec.pytorchReplicaSpecs.Worker.replicas
    kind: NoteKind
    reason: str
    todo: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "kind": self.kind, "reason": self.reason, "todo": self.todo}


@dataclass
class Conversion:
    """One source document (a Kubernetes object, or a Slurm script) and what it became."""

    source: str  # where it came from: "path/to/file.yaml#2", "job.sbatch", "<stdin>#1"
    kind: str  # the source's kind, e.g. "kubeflow.org/v1 PyTorchJob" or "slurm batch script"
    name: str
    resources: list[Manifest] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    # Set when the document could not be converted at all: one line saying why.
    error: str | None = None

    def note(self, path: str, kind: NoteKind, reason: str, todo: str = "") -> None:
        self.notes.append(Note(path, kind, reason, todo))

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "name": self.name,
            "resources": self.resources,
            "notes": [n.as_dict() for n in self.notes],
            "error": self.error,
        }


class UnsupportedInput(ValueError):
    """A document no converter handles, or one too malformed to convert: its message is the
    one line the report shows for it."""


def whole(value: object, path: str) -> int:
    """`value` as a whole number, or the one-line error that names its field."""
    if isinstance(value, bool):
        raise UnsupportedInput(f"{path}: not a whole number: {value!r}")
    try:
        return int(str(value).strip())
    except ValueError:
        raise UnsupportedInput(f"{path}: not a whole number: {value!r}") from None
