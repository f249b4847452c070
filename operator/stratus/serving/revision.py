"""A revision is a distinct server spec, named by a stable hash of what the pods run."""

from __future__ import annotations

import hashlib
import json

from stratus.api.inferenceservice import InferenceServiceSpec

# Fields that change what the server pods run; replicas, autoscaling and rollout do not.
SERVER_FIELDS = {
    "image",
    "command",
    "args",
    "env",
    "env_from",
    "working_dir",
    "volumes",
    "volume_mounts",
    "pod_template",
    "model",
    "port",
    "readiness_path",
    "resources",
}
LENGTH = 10


def revision_of(spec: InferenceServiceSpec) -> str:
    server = spec.model_dump(include=SERVER_FIELDS, by_alias=True, exclude_none=True)
    canonical = json.dumps(server, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:LENGTH]
