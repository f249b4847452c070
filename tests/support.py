"""Helpers shared by the end-to-end tests: waiting on conditions, and API clients."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
from kubernetes import client, config, watch
from urllib3.exceptions import ProtocolError

T = TypeVar("T")


def needs_real_node(reason: str) -> NoReturn:
    """Skip a test that needs real containers, with `reason`; on CI, where the real node is
    part of what is tested, fail instead."""
    if os.environ.get("CI"):
        raise AssertionError(f"CI needs the real node: {reason}")
    pytest.skip(reason)


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def wait_events(
    api: client.ApiClient, namespace: str, name: str, reason: str, timeout: float = 30.0
) -> list[Any]:
    """The Events about `name` with `reason`, once there is one: the operator posts Events
    after the status write they describe, so a test that has seen the status waits for them."""
    core = client.CoreV1Api(api)
    return wait_for(
        f"a {reason} Event about {name}",
        lambda: [
            e
            for e in core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={name}"
            ).items
            if e.reason == reason
        ],
        timeout=timeout,
    )


def api_client(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


def token_client(admin: client.ApiClient, token: str) -> client.ApiClient:
    """A client that talks to the same API server as `admin`, as the bearer of `token`."""
    cfg = client.Configuration()
    cfg.host = admin.configuration.host
    cfg.ssl_ca_cert = admin.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(cfg)


class Recorder:
    """Records every version of the objects a watch reports, so a test can assert on states that
    last only moments (a pod's final status just before it is removed)."""

    def __init__(self, list_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.objects: list[Any] = []
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, args=(list_fn, args, kwargs), daemon=True)
        self._thread.start()

    def _run(
        self, list_fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        try:
            for event in self._watch.stream(list_fn, *args, timeout_seconds=300, **kwargs):
                self.objects.append(event["object"])
        except ProtocolError:
            # The server closed the stream (the test ended, or its namespace went away).
            return

    def wait(self, what: str, probe: Callable[[list[Any]], bool], timeout: float = 30) -> None:
        """Waits until `probe` holds of what the watch has reported: the test's own reads can
        run ahead of the watch."""
        wait_for(what, lambda: probe(list(self.objects)), timeout=timeout)

    def stop(self) -> list[Any]:
        self._watch.stop()
        return list(self.objects)
