"""A SeaweedFS S3 server of a test's own, for tests that need no cluster: `running(root,
node_ip=None)` is the local cluster's `objectstore.standalone` (free ports, the default bucket,
killed and deleted on exit; without the binary it fails naming the build command)."""

from __future__ import annotations

from stratus.devcluster.objectstore import standalone as running

__all__ = ["running"]
