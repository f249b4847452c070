"""The chart rendered by the pinned helm: manifests/install.yaml is this output for the default
values, so `kubectl apply -f` installs exactly what `helm install` would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from stratus.devcluster import binaries

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "stratus"
NAMESPACE = "stratus-system"
HEADER = f"""# Rendered from charts/stratus (default values) by `make manifests`. Do not edit.
# kubectl apply --server-side -f manifests/install.yaml
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  labels:
    pod-security.kubernetes.io/enforce: restricted
"""


def helm(*args: str) -> str:
    done = subprocess.run(
        [str(binaries.locate()["helm"]), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def render_manifests() -> str:
    rendered = helm("template", "stratus", str(CHART), "--namespace", NAMESPACE)
    return HEADER + rendered


if __name__ == "__main__":
    if sys.argv[1:] != ["render-manifests"]:
        sys.exit("usage: python -m stratus.devcluster.packaging render-manifests")
    sys.stdout.write(render_manifests())
