"""Golden files for the converters: STRATUS_UPDATE_GOLDEN=1 rewrites them after a deliberate
change (review their diff before committing)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def assert_golden(got: list[dict[str, Any]], source: Path) -> None:
    """`got` equals the .expected.json beside `source`."""
    expected = source.with_suffix(".expected.json")
    if os.environ.get("STRATUS_UPDATE_GOLDEN"):
        expected.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(expected.read_text())
