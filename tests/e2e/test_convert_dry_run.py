"""Every resource `stratus convert` makes from the whole corpus (tests/convert_corpus/, all
sources) passes the API server's own check, a server-side dry run against our CRDs. The
coverage figure is the share of corpus documents, not counting the inputs meant to fail (files
named malformed* or bad-*), that convert into resources which all pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratus import cli
from stratus.convert import dispatch, inputs
from stratus.convert.render import resource_key
from tests.conftest import Cluster

CORPUS = Path(__file__).resolve().parents[1] / "convert_corpus"
COVERAGE_GOAL = 0.9
MEANT_TO_FAIL = ("malformed", "bad-")


@pytest.mark.before_operator
def test_the_whole_corpus_passes_server_side_dry_run(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    conversions = dispatch.convert(inputs.read([str(CORPUS)]))
    counted = [c for c in conversions if not Path(c.source).name.startswith(MEANT_TO_FAIL)]
    assert {Path(c.source).parent.name for c in counted} >= {"kubeflow"}
    resources = [r for c in counted for r in c.resources]
    for resource in resources:
        # The schema is the subject, not the namespaces the sources happened to live in.
        resource["metadata"]["namespace"] = namespace
    rejected = cli.dry_run(resources, cluster.kubeconfig)
    passing = [
        c
        for c in counted
        # An analysis template makes no resource of its own: it passes with its Rollout's.
        if c.error is None and not any(resource_key(r) in rejected for r in c.resources)
    ]
    failures = [f"{c.source}: {c.error}" for c in counted if c.error] + [
        f"{key}: {why}" for key, why in rejected.items()
    ]
    coverage = len(passing) / len(counted)
    print(f"convert coverage: {len(passing)}/{len(counted)} documents = {coverage:.0%}")
    for line in failures:
        print(f"  {line}")
    assert coverage >= COVERAGE_GOAL, "\n".join(failures)
    # Whatever the share, no resource a conversion produced may be refused.
    assert not rejected, "\n".join(f"{key}: {why}" for key, why in rejected.items())
