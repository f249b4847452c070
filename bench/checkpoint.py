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


def measure(root: Path, bucket: str, size: int, samples: int) -> dict[str, Any]:
    """Each sample: a new step saved and uploaded by the SDK, the same file uploaded plainly;
    then a resume into an empty directory, and a plain download of the same bytes."""
    client = S3Client(bucket)  # the SDK's defaults; AWS_* from the environment
    prefix = f"bench-{os.getpid()}"
    writer = CheckpointManager(
        root / "writer",
        keep=1,
        termination_log=root / "termination-log",
        rank=0,
        world_size=1,
        attempt=1,
        uri=f"s3://{bucket}/{prefix}/checkpoints",
        remote_keep=1,
        client=client,
    )
    times: dict[str, list[float]] = {
        "local_save": [],
        "sdk_upload": [],
        "plain_upload": [],
        "sdk_resume": [],
        "plain_download": [],
        "sha256": [],
    }
    plain = f"{prefix}/plain/{STATE}"
    target = root / "resumed"
    # SeaweedFS grows a bucket's volumes at its first write: a cost neither side should pay.
    warm = root / "warm"
    warm.mkdir(parents=True, exist_ok=True)
    write_state(warm, 2 * client.part_size)
    client.upload_file(warm / STATE, f"{prefix}/warm/{STATE}")
    shutil.rmtree(warm)
    for step in range(1, samples + 1):
        started = time.perf_counter()
        saved = writer.save(step, lambda d: write_state(d, size))
        assert saved is not None
        saved_at = time.perf_counter()
        uploaded = writer.flush()
        # From save() returning, which is when the upload is handed to the upload thread.
        uploaded_at = time.perf_counter()
        assert uploaded is not None
        assert uploaded.step == step
        client.upload_file(saved.path / STATE, plain)
        plain_at = time.perf_counter()
        times["local_save"].append(saved_at - started)
        times["sdk_upload"].append(uploaded_at - saved_at)
        times["plain_upload"].append(plain_at - uploaded_at)

        reader = CheckpointManager(
            target,
            termination_log=root / "reader-log",
            rank=0,
            world_size=1,
            attempt=1,
            uri=f"s3://{bucket}/{prefix}/checkpoints",
            client=client,
        )
        started = time.perf_counter()
        point = reader.resume_point()
        times["sdk_resume"].append(time.perf_counter() - started)
        assert point is not None
        assert point.step == step
        shutil.rmtree(target)
        target.mkdir()
        started = time.perf_counter()
        client.download_file(plain, target / STATE, size)
        times["plain_download"].append(time.perf_counter() - started)
        started = time.perf_counter()
        with (target / STATE).open("rb") as handle:
            hashlib.file_digest(handle, "sha256")
        times["sha256"].append(time.perf_counter() - started)
        shutil.rmtree(target)

    def median(name: str) -> float:
        return statistics.median(times[name])

    mib = size / 2**20
    return {
        "size_mib": mib,
        "samples": samples,
        "client": {
            "part_size_mib": client.part_size / 2**20,
            "concurrency": client.concurrency,
        },
        "seconds": {name: [round(t, 3) for t in values] for name, values in times.items()},
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
