"""The checkpoint SDK a training program imports to save, find and report checkpoints."""

from stratus.sdk.checkpoint import (
    PREEMPTED_EXIT_CODE,
    Checkpoint,
    CheckpointManager,
    load_state_dict,
    save_state_dict,
)

__all__ = [
    "PREEMPTED_EXIT_CODE",
    "Checkpoint",
    "CheckpointManager",
    "load_state_dict",
    "save_state_dict",
]
