"""The example model server (examples/serve/server.py), imported from its file: it is not a
package of ours, and its image runs it as a script."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SERVER_PY = Path(__file__).resolve().parents[1] / "examples" / "serve" / "server.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stratus_example_model_server", SERVER_PY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


server = _load()
