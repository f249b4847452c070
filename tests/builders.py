"""Fluent builders of test objects, so each test says only what it is about."""

from __future__ import annotations

import copy
import json
from typing import Any, Self

from stratus.api.common import API_VERSION
from stratus.devcluster.nodepools import SIMULATED_POD_SPEC


class TrainingJobBuilder:
    def __init__(self, name: str) -> None:
        self._obj: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": "TrainingJob",
            "metadata": {"name": name},
            "spec": {
                "image": "example.com/train:1",
                "resources": {"gpu": 1},
                "terminationGracePeriodSeconds": 5,
                # Failed attempts back off 1s, then 2s: the tests stay fast, and still wait.
                "retry": {"backoffSeconds": 1, "maxBackoffSeconds": 2},
                # Simulated: kwok plays the kubelet, even beside a real node.
                "podTemplate": {"spec": copy.deepcopy(SIMULATED_POD_SPEC)},
            },
        }

    @property
    def _spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self._obj["spec"]
        return spec

    def _annotate(self, key: str, value: str) -> Self:
        template = self._spec.setdefault("podTemplate", {})
        template.setdefault("metadata", {}).setdefault("annotations", {})[key] = value
        return self

    def spot(self, max_preemptions: int | None = None, fallback_after: int | None = None) -> Self:
        spot: dict[str, Any] = {"enabled": True}
        if max_preemptions is not None:
            spot["maxPreemptions"] = max_preemptions
        if fallback_after is not None:
            spot["fallbackToOnDemandAfter"] = fallback_after
        self._spec["spot"] = spot
        return self

    def gpus(self, count: int) -> Self:
        self._spec["resources"]["gpu"] = count
        return self

    def workers(self, count: int) -> Self:
        self._spec["workers"] = count
        return self

    def retry(
        self,
        max_restarts: int,
        retryable: list[int] | None = None,
        max_retryable: int | None = None,
    ) -> Self:
        retry = self._spec["retry"]
        retry["maxRestarts"] = max_restarts
        retry["retryableExitCodes"] = retryable or []
        if max_retryable is not None:
            retry["maxRetryableRestarts"] = max_retryable
        return self

    def backoff(self, seconds: int, most: int) -> Self:
        self._spec["retry"].update(backoffSeconds=seconds, maxBackoffSeconds=most)
        return self

    def team(self, team: str) -> Self:
        self._spec["team"] = team
        return self

    def starts_after(self, duration: str) -> Self:
        """Time from scheduling to the containers running (pulling images, say)."""
        return self._annotate("stratus.dev/sim-start-delay", duration)

    def runs_for(self, duration: str) -> Self:
        return self._annotate("stratus.dev/sim-duration", duration)

    def checkpoint(self, **fields: str) -> Self:
        """spec.checkpoint, as written in the resource (uri, endpoint, credentialsSecret, ...)."""
        self._spec["checkpoint"] = dict(fields)
        return self

    def exits_with(self, code: int) -> Self:
        return self._annotate("stratus.dev/sim-exit-code", str(code))

    def reports(self, path: str, step: int) -> Self:
        """The termination message the simulated program leaves: its last checkpoint."""
        message = json.dumps({"path": path, "step": step})
        return self._annotate("stratus.dev/sim-termination-message", message)

    def message(self, text: str) -> Self:
        return self._annotate("stratus.dev/sim-termination-message", text)

    def suspended(self) -> Self:
        self._spec["suspend"] = True
        return self

    def build(self) -> dict[str, Any]:
        return copy.deepcopy(self._obj)
