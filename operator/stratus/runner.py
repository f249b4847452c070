"""A keyed work queue, as controller-runtime has: work for one key never runs twice at once,
triggers that arrive meanwhile coalesce into one more run, failures retry with exponential
backoff, and work can ask to run again after a delay. Work for a key triggered as urgent (a new
resource) takes the next free slot before the rest, as in controller-runtime's priority queue:
under a burst, starting new work comes before reporting progress on the old."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

log = logging.getLogger(__name__)

Work = Callable[[Hashable], Awaitable[float | None]]


class PrioritySlots:
    """A semaphore whose waiters are served urgent first, then in arrival order."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        # urgent waiters, then the others
        self._waiting: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())

    async def acquire(self, urgent: bool) -> None:
        if self._free > 0 and not any(self._waiting):
            self._free -= 1
            return
        slot = asyncio.get_running_loop().create_future()
        self._waiting[0 if urgent else 1].append(slot)
        try:
            await slot
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled():
                self.release()  # handed a slot just as it was cancelled: pass it on
            raise

    def release(self) -> None:
        for queue in self._waiting:
            while queue:
                slot = queue.popleft()
                if not slot.done():
                    slot.set_result(None)
                    return
        self._free += 1


class KeyedRunner:
    def __init__(
        self,
        work: Work,
        concurrency: int = 16,
        base_backoff: float = 0.5,
        max_backoff: float = 60.0,
    ) -> None:
        self._work = work
        self._slots = PrioritySlots(concurrency)
        self._base = base_backoff
        self._max = max_backoff
        self._running: dict[Hashable, asyncio.Task[None]] = {}
        self._dirty: set[Hashable] = set()
        self._urgent: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}

    def trigger(self, key: Hashable, urgent: bool = False) -> None:
        """Run the work for `key` now, or once more after the run in progress."""
        if urgent:
            self._urgent.add(key)
        if key in self._running:
            self._dirty.add(key)
            return
        self._running[key] = asyncio.get_running_loop().create_task(self._loop(key))

    def trigger_after(self, key: Hashable, delay: float) -> None:
        """Run the work for `key` after `delay` seconds (an earlier request wins)."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        current = self._timers.get(key)
        if current is not None and current.when() <= when:
            return
        if current is not None:
            current.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.trigger(key)

    def forget(self, key: Hashable) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(key, None)

    async def _loop(self, key: Hashable) -> None:
        try:
            while True:
                self._dirty.discard(key)
                delay = await self._once(key)
                if key not in self._dirty:
                    break
        finally:
            del self._running[key]
        if delay is not None:
            self.trigger_after(key, delay)

    async def _once(self, key: Hashable) -> float | None:
        await self._slots.acquire(key in self._urgent)
        self._urgent.discard(key)
        try:
            delay = await self._work(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            backoff = min(self._max, self._base * 2.0 ** (failures - 1))
            log.exception(
                "reconciling %s failed (%d in a row); retrying in %.1fs", key, failures, backoff
            )
            return backoff
        finally:
            self._slots.release()
        self._failures.pop(key, None)
        return delay

    async def idle(self) -> None:
        """Wait until no work is running (tests and shutdown)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)
