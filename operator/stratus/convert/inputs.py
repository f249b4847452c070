"""Reading what `stratus convert` and `stratus assess` are given: files, directories or stdin,
each holding Kubernetes objects (many YAML or JSON documents) or a Slurm batch script."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# What a directory is searched for; golden outputs beside a corpus are not inputs.
SUFFIXES = (".yaml", ".yml", ".json", ".sbatch", ".slurm", ".sh")
SKIPPED_SUFFIX = ".expected.json"
SCRIPT_SUFFIXES = (".sbatch", ".slurm", ".sh")
_SBATCH = re.compile(r"^#SBATCH\s", re.MULTILINE)


@dataclass(frozen=True)
class Document:
    """One input document: a Kubernetes object, or a script's text; or why it could not be read."""

    source: str  # "path#2" for the second document of a file, "path" for a script
    content: dict[str, Any] | str | None
    error: str | None = None


def is_script(name: str, text: str) -> bool:
    """A Slurm batch script: by its suffix, or by a shebang followed by #SBATCH directives."""
    if name.endswith(SCRIPT_SUFFIXES):
        return True
    return text.startswith("#!") or bool(_SBATCH.search(text))


def parse(text: str, name: str) -> list[Document]:
    """The documents of one file's text."""
    if is_script(name, text):
        return [Document(name, text)]
    try:
        raw = (
            [json.loads(text)]
            if name.endswith(".json")
            else [d for d in yaml.safe_load_all(text) if d is not None]
        )
    except (yaml.YAMLError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [Document(name, None, f"not valid YAML or JSON: {first}")]
    docs: list[Document] = []
    for index, doc in enumerate(_expand(raw), start=1):
        source = f"{name}#{index}"
        if not isinstance(doc, dict):
            docs.append(Document(source, None, f"not a Kubernetes object: a {type(doc).__name__}"))
        else:
            docs.append(Document(source, doc))
    return docs


def _expand(raw: list[Any]) -> list[Any]:
    """Kubernetes `List` objects (kubectl get -o yaml) stand for their items."""
    out: list[Any] = []
    for doc in raw:
        if (
            isinstance(doc, dict)
            and doc.get("kind") == "List"
            and isinstance(doc.get("items"), list)
        ):
            out.extend(doc["items"])
        else:
            out.append(doc)
    return out


def files(path: Path) -> list[Path]:
    """A file itself, or a directory's input files in a stable order."""
    if not path.is_dir():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and p.name.endswith(SUFFIXES) and not p.name.endswith(SKIPPED_SUFFIX)
    )


def read(paths: list[str], stdin_text: str | None = None) -> list[Document]:
    """Every document of the paths given; "-" reads stdin_text."""
    docs: list[Document] = []
    for given in paths:
        if given == "-":
            docs += parse(stdin_text or "", "<stdin>")
            continue
        path = Path(given)
        if not path.exists():
            docs.append(Document(given, None, "no such file or directory"))
            continue
        for file in files(path):
            try:
                text = file.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                docs.append(Document(str(file), None, f"cannot be read: {exc}"))
                continue
            docs += parse(text, str(file))
    return docs
