"""Replay: a recorded request set sent to the candidate and the baseline, a few at a time, and
judged with every comparator over the whole set."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratus.api.validation import Comparator
from stratus.validation import client
from stratus.validation.client import Endpoint
from stratus.validation.compare import Answer, Hook, compare
from stratus.validation.judge import Judge
from stratus.validation.report import Example, SourceResult

THREADS = 8
WRAPPER_KEYS = frozenset({"request", "expected"})
NO_EXPECTATION = object()


class RequestSetError(ValueError):
    """A request set that cannot be replayed; the message names the line."""


@dataclass(frozen=True)
class Recorded:
    line: int
    body: bytes
    expected: Any = NO_EXPECTATION


def parse_line(text: str, line: int) -> Recorded | None:
    """A line of the request set: a request body, or {"request": body, "expected": answer}."""
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise RequestSetError(f"line {line}: not JSON: {exc}") from None
    if isinstance(value, dict) and "request" in value and set(value) <= WRAPPER_KEYS:
        expected = value.get("expected", NO_EXPECTATION)
        return Recorded(line, json.dumps(value["request"]).encode(), expected)
    return Recorded(line, json.dumps(value).encode())


def load(path: Path, limit: int) -> list[Recorded]:
    """The first `limit` requests of a JSON-lines file (blank lines skipped)."""
    requests: list[Recorded] = []
    try:
        with path.open(encoding="utf-8") as lines:
            for number, text in enumerate(lines, 1):
                if len(requests) >= limit:
                    break
                recorded = parse_line(text, number)
                if recorded is not None:
                    requests.append(recorded)
    except UnicodeDecodeError as exc:
        raise RequestSetError(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except OSError as exc:
        raise RequestSetError(f"cannot read the request set: {exc.strerror}") from None
    if not requests:
        raise RequestSetError("the request set holds no requests")
    return requests


@dataclass(frozen=True)
class Exchange:
    recorded: Recorded
    baseline: Answer
    candidate: Answer
    again: Answer | None


def replay(
    requests: Sequence[Recorded],
    comparators: Sequence[Comparator],
    *,
    candidate: Endpoint,
    baseline: Endpoint,
    min_agreement: float,
    noise_floor: bool,
    deadline: float | None = None,
    stop: threading.Event | None = None,
    threads: int = THREADS,
    hooks: Callable[[str], Hook] = client.hook,
) -> tuple[SourceResult, list[Example]]:
    """Every request to both (and the baseline twice with noise_floor), judged over the whole
    set; stops sending at `deadline` (time.monotonic()) or `stop` and judges what it has then."""
    judge = Judge("replay", comparators, min_agreement, hooks=hooks)
    accuracy = {"candidate": [0, 0], "baseline": [0, 0]}
    expectation = Comparator(name="expected", type="exact", fields=comparators[0].fields)

    def exchange(recorded: Recorded) -> Exchange:
        base, _ = client.post(baseline, recorded.body)
        cand, _ = client.post(candidate, recorded.body)
        again = client.post(baseline, recorded.body)[0] if noise_floor else None
        return Exchange(recorded, base, cand, again)

    def record(done: Exchange) -> None:
        judge.count(requests=1)
        judge.judge(done.baseline, done.candidate, done.again, line=done.recorded.line)
        if done.recorded.expected is not NO_EXPECTATION:
            wanted = Answer(200, done.recorded.expected)
            for who, answer in (("candidate", done.candidate), ("baseline", done.baseline)):
                outcome = compare(expectation, wanted, answer)
                accuracy[who][0] += outcome.agreed
                accuracy[who][1] += outcome.total

    with ThreadPoolExecutor(threads, thread_name_prefix="replay") as pool:
        pending: set[Future[Exchange]] = set()
        for recorded in _until(requests, deadline, stop):
            if len(pending) >= 2 * threads:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    record(future.result())
            pending.add(pool.submit(exchange, recorded))
        for future in pending:
            record(future.result())
    judge.accuracy = {who: agreed / total for who, (agreed, total) in accuracy.items() if total}
    examples = sorted(judge.examples_now(), key=lambda e: (e.comparator, e.line or 0))
    return judge.result(None, final=True), examples


def _until(
    requests: Sequence[Recorded], deadline: float | None, stop: threading.Event | None
) -> Iterator[Recorded]:
    for recorded in requests:
        if (deadline is not None and time.monotonic() >= deadline) or (stop and stop.is_set()):
            return
        yield recorded
