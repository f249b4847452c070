"""Status writes are JSON merge patches: a key dropped from a nested object (status.schedule's
idleSince, a handled command) must be sent as null, or the API server keeps it."""

from __future__ import annotations

from stratus.kube import merge_patch


def test_only_what_changed_is_sent_nested_key_by_key() -> None:
    old = {"phase": "Healthy", "schedule": {"held": False, "reason": "Idle", "idleSince": "t0"}}
    new = {"phase": "Healthy", "schedule": {"held": False, "reason": "OnHours"}}
    assert merge_patch(old, new) == {"schedule": {"reason": "OnHours", "idleSince": None}}


def test_top_level_keys_dropped_are_deleted_and_new_ones_sent_whole() -> None:
    old = {"phase": "Paused", "canaryRevision": "abc", "conditions": [{"type": "Ready"}]}
    new = {"phase": "Healthy", "schedule": {"held": True}, "conditions": []}
    assert merge_patch(old, new) == {
        "phase": "Healthy",
        "schedule": {"held": True},
        "conditions": [],
        "canaryRevision": None,
    }


def test_nothing_changed_is_an_empty_patch() -> None:
    status = {"schedule": {"held": True, "replicas": 0}, "handledCommands": {}}
    assert merge_patch(status, {**status}) == {}
