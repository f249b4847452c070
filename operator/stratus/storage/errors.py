"""The one error model staging raises: its message is the reason shown to the user."""

from __future__ import annotations


class StagingError(RuntimeError):
    pass
