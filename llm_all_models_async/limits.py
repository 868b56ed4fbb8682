"""First-come-first-served slots: per-model concurrency and the global thread cap.

A waiting prompt holds no thread: it awaits a future on its own event loop, so it can be
cancelled (or time out) before it starts.  Slots are released by worker threads, possibly
while the waiter's loop is another loop in another thread, hence a thread lock and
``call_soon_threadsafe`` rather than ``asyncio.Semaphore``.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    granted: bool = False


@dataclass(eq=False)
class SlotLimiter:
    """A FIFO counting semaphore whose limit may change between acquisitions."""

    name: str
    limit: int
    in_use: int = 0
    # Re-entrant: a waiter abandoned with its loop is cleaned up (the ``except`` in
    # ``acquire``) when its coroutine is garbage collected, which can happen on any thread,
    # in the middle of any allocation, also one made while this thread holds the lock.  Every
    # locked section leaves the line and the count consistent before it allocates, so such
    # a nested clean-up sees a coherent state.
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _waiters: collections.deque[_Waiter] = field(default_factory=collections.deque, repr=False)

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiters)

    def try_acquire(self, limit: int | None = None) -> bool:
        """Take a slot if one is free and nobody is in line; never waits.

        The uncontended path of every prompt, without the coroutine and the timeout wrapper
        that waiting in line needs.
        """
        with self._lock:
            return self._take_free_locked(limit)

    async def acquire(self, limit: int | None = None) -> None:
        """Take a slot, waiting in line if none is free; cancellation leaves the line cleanly.

        A new ``limit`` applies at once: raising it admits prompts already in line.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._take_free_locked(limit):
                return
            waiter = _Waiter(loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await waiter.future
        except BaseException:
            with self._lock:
                if waiter.granted:
                    # The slot was handed over just as we gave up: pass it on.
                    waiter.granted = False
                    self._release_locked()
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
            raise

    def _take_free_locked(self, limit: int | None) -> bool:
        """Apply a new ``limit`` (admitting waiters it now fits), then take a slot if one is
        free and nobody is in line."""
        if limit is not None and limit != self.limit:
            self.limit = limit
            self._admit_locked()
        if self.in_use < self.limit and not self._waiters:
            self.in_use += 1
            return True
        return False

    def release(self) -> None:
        """Free a slot and admit the longest waiters that now fit; safe from any thread."""
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        self.in_use -= 1
        self._admit_locked()

    def _admit_locked(self) -> None:
        while self._waiters and self.in_use < self.limit:
            waiter = self._waiters.popleft()
            if waiter.future.cancelled():
                continue
            # Count the slot before calling out: a nested clean-up (see ``_lock``) must find
            # the count already up to date.
            waiter.granted = True
            self.in_use += 1
            try:
                waiter.loop.call_soon_threadsafe(_grant, waiter.future)
            except RuntimeError:  # the waiter's loop is closed: nobody will take this slot
                if waiter.granted:
                    waiter.granted = False
                    self.in_use -= 1


def _grant(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_registry_lock = threading.Lock()
_model_limiters: dict[tuple[str, str, str], SlotLimiter] = {}
global_threads = SlotLimiter("threads", limit=16)


def model_limiter(key: tuple[str, str, str], limit: int) -> SlotLimiter:
    """The limiter shared by every instance of one model (plugin class and model id).

    Plugins build fresh model instances on every lookup, while the resources that make
    concurrency unsafe (a loaded checkpoint, redirected fds) are shared between them, so the
    limiter is keyed by what the model *is*, not by the instance.
    """
    with _registry_lock:
        limiter = _model_limiters.get(key)
        if limiter is None:
            limiter = _model_limiters[key] = SlotLimiter(f"{key[0]}.{key[1]}:{key[2]}", limit)
        return limiter
