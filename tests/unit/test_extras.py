"""A plain `pip install stratus-operator` lacks the local cluster's dependencies: `stratus dev`
then says, in one line, which extra to install, and exits 2; no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stratus import extras
from stratus.cli import main

REPO = Path(__file__).resolve().parents[2]
INSTALL = "pip install 'stratus-operator[devcluster]'"


@pytest.mark.parametrize("module", ["cryptography", "boto3"])
# Not `up` in this process: should the check ever go, an `up` whose modules are already imported
# would start a cluster. The subprocess test below runs `up` where the import itself fails.
@pytest.mark.parametrize("command", ["down", "status", "env"])
def test_stratus_dev_without_the_extra_names_it_in_one_line(
    module: str,
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails: the module is not installed
    assert main(["dev", command, "--state-dir", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith(f"{INSTALL}\n")
    assert err.count("\n") == 1
    assert err.startswith(f"stratus: stratus dev needs {module},")
    assert not list(tmp_path.iterdir())  # nothing started, nothing written


def test_the_line_names_every_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography", None)
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(extras.MissingExtraError, match=r"needs cryptography, boto3, which"):
        extras.require("devcluster", "stratus dev")


def test_installed_extras_pass() -> None:
    extras.require("devcluster", "stratus dev")
    assert extras.missing("s3") == []


def test_simulate_needs_no_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography", None)
    monkeypatch.setitem(sys.modules, "boto3", None)
    assert main(["dev", "simulate", str(REPO / "examples" / "trainingjob-spot.yaml")]) == 0
    assert "kind: TrainingJob" in capsys.readouterr().out


def test_the_installed_command_exits_2_without_a_traceback(tmp_path: Path) -> None:
    """The console script as a user runs it, in a fresh interpreter where cryptography cannot be
    imported."""
    script = (
        "import sys; sys.modules['cryptography'] = None; "
        "from stratus.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "dev", "up", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "stratus: stratus dev needs cryptography, which the base install leaves out: " + INSTALL
    ]
