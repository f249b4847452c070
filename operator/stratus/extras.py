"""The optional dependencies some commands need, named by the pyproject extra that installs them,
so that a plain `pip install stratus-operator` answers a command it cannot run with one line
naming the install command, never a traceback."""

from __future__ import annotations

import importlib.util

DISTRIBUTION = "stratus-operator"

# extra -> the modules it provides (pyproject.toml's [project.optional-dependencies]).
EXTRAS: dict[str, tuple[str, ...]] = {
    # `stratus dev`: the local cluster's certificates, and the bucket of its object store.
    "devcluster": ("cryptography", "boto3"),
    # Staging models from s3:// and gs:// (`python -m stratus.storage`).
    "s3": ("boto3",),
}


class MissingExtraError(ImportError):
    pass


def missing(extra: str) -> list[str]:
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def require(extra: str, what: str) -> None:
    """Raise MissingExtraError, with the one line to show, when `extra` is not installed."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(
            f"{what} needs {', '.join(absent)}, which the base install leaves out: "
            f"pip install '{DISTRIBUTION}[{extra}]'"
        )
