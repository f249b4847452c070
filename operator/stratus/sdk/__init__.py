"""The checkpoint SDK a training program imports to save, find and report checkpoints, locally
and in object storage (STRATUS_CHECKPOINT_URI=s3://...)."""

from stratus.sdk.checkpoint import (
    PREEMPTED_EXIT_CODE,
    Checkpoint,
    CheckpointManager,
    load_state_dict,
    save_state_dict,
)
from stratus.sdk.remote import RemoteCheckpoint, RemoteError

__all__ = [
    "PREEMPTED_EXIT_CODE",
    "Checkpoint",
    "CheckpointManager",
    "RemoteCheckpoint",
    "RemoteError",
    "load_state_dict",
    "save_state_dict",
]
