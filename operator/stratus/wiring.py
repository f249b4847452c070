"""Joins a controller to kopf: its work queue, and the kopf indexes it reads. kopf hands indexes
only to handlers, so they are bound at the first event; nothing is queued before start-up."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

from stratus.runner import KeyedRunner, Work

C = TypeVar("C")


class Wiring(Generic[C]):
    def __init__(self, bind: Callable[[C, Mapping[str, Any]], None]) -> None:
        self._bind = bind
        self.controller: C | None = None
        self._runner: KeyedRunner | None = None
        self._bound = False

    def start(self, controller: C, work: Work) -> None:
        self.controller = controller
        self._runner = KeyedRunner(work)
        self._bound = False

    def bind(self, handler_kwargs: Mapping[str, Any]) -> None:
        """Bind the indexes from any handler's arguments (kopf gives every handler all of
        them): a controller that others read from is then bound before its own first event."""
        if self.controller is None:
            raise RuntimeError("handlers ran before the operator's start-up hook")
        if not self._bound:
            self._bind(self.controller, handler_kwargs)
            self._bound = True

    def queue(self, key: Hashable, handler_kwargs: Mapping[str, Any], urgent: bool = False) -> None:
        self.bind(handler_kwargs)
        assert self._runner is not None
        self._runner.trigger(key, urgent)


def unstarted(body: Mapping[str, Any]) -> bool:
    """A resource that no reconcile has given a status yet: new work, queued as urgent."""
    return not (body.get("status") or {}).get("phase")


def snapshot(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain, deep copy of a kopf body, safe to keep in an index."""
    copied: dict[str, Any] = json.loads(json.dumps(dict(body)))
    return copied


def nothing(_key: object) -> tuple[()]:
    """What a controller's caches hold until its indexes are bound."""
    return ()
