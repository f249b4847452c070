"""Checkpoints in object storage, beside the limit: the SDK's upload of a checkpoint and its
resume from the bucket, each next to the same client moving the same bytes with nothing around
it (one multipart upload, one ranged download), in the same run against the same SeaweedFS.

The measures run in a process of their own (`python -m bench.checkpoint`), so that its peak
resident memory is the SDK's and the client's, not the benchmark harness's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from stratus.devcluster import objectstore
from stratus.sdk import CheckpointManager
from stratus.sdk.s3 import S3Client

REPO = Path(__file__).resolve().parents[1]
STATE = "state.bin"
_BLOCK = 4 << 20  # random, so that nothing on the way can compress it


def write_state(directory: Path, size: int) -> None:
    block = os.urandom(_BLOCK)
    with (directory / STATE).open("wb") as out:
        for start in range(0, size, _BLOCK):
            out.write(block[: min(_BLOCK, size - start)])


class Run:
    """One benchmark run: a writer saving steps into the bucket, the same client beside it."""

    def __init__(self, root: Path, bucket: str, size: int) -> None:
        self.root = root
        self.size = size
        self.client = S3Client(bucket)  # the SDK's defaults; AWS_* from the environment
        self.prefix = f"bench-{os.getpid()}"
        self.uri = f"s3://{bucket}/{self.prefix}/checkpoints"
        self.staged = root / "staged"
        self.target = root / "resumed"
        self.writer = self._manager(root / "writer", remote_keep=1)
        self.times: dict[str, list[float]] = {
            name: []
            for name in (
                *("local_save", "sdk_upload", "plain_upload"),
                *("sdk_resume", "plain_download", "sha256"),
            )
        }

    def _manager(self, directory: Path, **kwargs: Any) -> CheckpointManager:
        return CheckpointManager(
            directory,
            keep=1,
            termination_log=self.root / f"{directory.name}.log",
            rank=0,
            world_size=1,
            attempt=1,
            uri=self.uri,
            client=self.client,
            **kwargs,
        )

    def warm(self) -> None:
        """SeaweedFS grows a bucket's volumes at its first write: a cost neither side should
        pay."""
        self.staged.mkdir(parents=True, exist_ok=True)
        write_state(self.staged, 2 * self.client.part_size)
        self.client.upload_file(self.staged / STATE, f"{self.prefix}/warm/{STATE}")

    def sample(self, step: int) -> None:
        """A new step saved and uploaded by the SDK, and the same file uploaded plainly; then a
        resume into an empty directory, and a plain download of the same object. Each pair runs
        in both orders in turn, so neither side always meets a store (and page cache) the other
        has just filled or left busy."""
        write_state(self.staged, self.size)
        first = step % 2 == 1
        for upload in (self.sdk_upload, self.plain_upload)[:: 1 if first else -1]:
            upload(step)
        # Read once first: both sides then read it warm from the store, whose disk would
        # otherwise slow down whichever comes first.
        self.target.mkdir()
        self.client.download_file(self._object(step), self.target / STATE, self.size)
        shutil.rmtree(self.target)
        for fetch in (self.resume, self.plain_download)[:: 1 if first else -1]:
            fetch(step)

    def sdk_upload(self, step: int) -> None:
        started = time.perf_counter()
        saved = self.writer.save(step, lambda d: os.link(self.staged / STATE, d / STATE))
        saved_at = time.perf_counter()
        uploaded = self.writer.flush()
        # From save() returning, which is when the upload is handed to the upload thread.
        self.times["sdk_upload"].append(time.perf_counter() - saved_at)
        self.times["local_save"].append(saved_at - started)
        assert saved is not None
        assert uploaded is not None
        assert uploaded.step == step

    def plain_upload(self, step: int) -> None:
        started = time.perf_counter()
        self.client.upload_file(self.staged / STATE, f"{self.prefix}/plain/{step}")
        self.times["plain_upload"].append(time.perf_counter() - started)

    def resume(self, step: int) -> None:
        reader = self._manager(self.target)
        started = time.perf_counter()
        point = reader.resume_point()
        self.times["sdk_resume"].append(time.perf_counter() - started)
        assert point is not None
        assert point.step == step
        shutil.rmtree(self.target)

    def _object(self, step: int) -> str:
        """The key of the state the SDK uploaded for `step`."""
        return f"{self.prefix}/checkpoints/step-{step:012d}-a000001/{STATE}"

    def plain_download(self, step: int) -> None:
        self.target.mkdir()
        started = time.perf_counter()
        # The very object the SDK resumes from: the same bytes, stored the same way.
        self.client.download_file(self._object(step), self.target / STATE, self.size)
        self.times["plain_download"].append(time.perf_counter() - started)
        started = time.perf_counter()
        with (self.target / STATE).open("rb") as handle:
            hashlib.file_digest(handle, "sha256")
        self.times["sha256"].append(time.perf_counter() - started)
        shutil.rmtree(self.target)

    def summary(self) -> dict[str, Any]:
        def median(name: str) -> float:
            return statistics.median(self.times[name])

        mib = self.size / 2**20
        return {
            "size_mib": mib,
            "samples": len(self.times["sdk_upload"]),
            "client": {
                "part_size_mib": self.client.part_size / 2**20,
                "concurrency": self.client.concurrency,
            },
            "seconds": {k: [round(t, 3) for t in v] for k, v in self.times.items()},
            "upload_mib_per_s": {
                "sdk": round(mib / median("sdk_upload"), 1),
                "plain": round(mib / median("plain_upload"), 1),
            },
            "resume_mib_per_s": {
                "sdk": round(mib / median("sdk_resume"), 1),
                "plain": round(mib / median("plain_download"), 1),
            },
            "upload_ratio": round(median("sdk_upload") / median("plain_upload"), 3),
            "resume_ratio": round(median("sdk_resume") / median("plain_download"), 3),
            # A resume checks every byte, so it is also bound by hashing them.
            "resume_ratio_vs_download_or_hash": round(
                median("sdk_resume") / max(median("plain_download"), median("sha256")), 3
            ),
            "resume_seconds": round(median("sdk_resume"), 3),
            # ru_maxrss is in KiB on Linux.
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }


def measure(root: Path, bucket: str, size: int, samples: int) -> dict[str, Any]:
    run = Run(root, bucket, size)
    run.warm()
    for step in range(1, samples + 1):
        run.sample(step)
    return run.summary()


def checkpoint_storage(
    root: Path, size: int, samples: int, creds: objectstore.Credentials | None = None
) -> dict[str, Any]:
    """The benchmark against `creds`' store, or against a SeaweedFS of its own under `root`."""
    if creds is None:
        with objectstore.standalone(root / "objectstore") as own:
            return checkpoint_storage(root, size, samples, own)
    work = root / "checkpoint-bench"
    work.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "bench.checkpoint", "--root", str(work)),
            *("--bucket", creds.bucket, "--size", str(size), "--samples", str(samples)),
        ],
        cwd=REPO,
        env={**os.environ, **creds.env()},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    shutil.rmtree(work, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the checkpoint benchmark failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.checkpoint")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--size", type=int, required=True, help="bytes of the checkpoint")
    parser.add_argument("--samples", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(measure(args.root, args.bucket, args.size, args.samples)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
