"""How a worker thread that runs a model shares the GIL with the event loop it streams to.

A model computing in pure Python holds the GIL between its chunks.  The loop then cannot run
at all: not to take a chunk, not to fire a timer.  CPython only forces the GIL away from it
after the switch interval (5 ms), and the loop needs the GIL again after every system call
it makes, so its lag adds up one switch interval after another.  Waking the other thread
costs too: 35-130 µs on a VM (see ``python -m benchmarks --only wakeup``), paid partly by
the thread that wakes it, far more than handing over a chunk.  So the worker keeps wake-ups
few, on two rules:

* **Batching, by time.**  While chunks come less than :data:`BATCH_EVERY` apart, the worker
  does not wake the consumer for each one; the consumer looks for chunks itself every
  :data:`BATCH_EVERY` (a timer on its loop, :attr:`.channel.Channel.poll_every`).  A chunk
  therefore reaches the consumer at most that late, however the model uses the GIL; the
  first chunk, and the first after a pause, is handed over at once.
* **Hand-overs, only to a starved loop.**  After each chunk the worker looks at the loop.
  A timer overdue by more than :data:`STARVED_AFTER`, or a callback still ready one chunk
  later, means the loop cannot get the GIL.  From then on, for :data:`STARVED_HOLD`, the
  worker hands the GIL over whenever the loop has work due (:func:`loop_has_work_due`),
  and waits (:func:`hand_over`) until the loop has nothing left to do, at most
  :data:`HAND_OVER_WAIT`, so one hand-over serves the loop completely instead of losing
  the GIL back at its next system call.  A model that releases the GIL (native work) never
  waits for the loop: its loop runs timers on time.

What the loop holds is read from the private attributes of asyncio's own loops (``_ready``,
``_scheduled``), read-only and under the GIL; other loops (uvloop) get :class:`SleepYielder`
instead, which yields with ``time.sleep(0)`` once a millisecond while the loop is starved.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Protocol

__all__ = [
    "BATCH_EVERY",
    "HAND_OVER_WAIT",
    "STARVED_AFTER",
    "STARVED_HOLD",
    "BatchingHandOver",
    "GilPolicy",
    "SleepYielder",
    "can_watch",
    "hand_over",
    "loop_has_work_due",
    "policy_for",
]

BATCH_EVERY = 0.04
"""Chunks closer together than this (seconds) are batched; the consumer then looks for them
this often, so a fast model's chunk reaches it at most this late.  Each look costs a model
that shares the GIL with the loop a fixed amount (a hand-over, or two waits for the GIL:
0.5-1 ms on a 2-vCPU VM), so the interval sets the share of the model's time lost to its
consumer: 40 ms halves what 20 ms cost (docs/thread-path-performance.md, "40 ms batches")."""

HAND_OVER_WAIT = 0.005
"""A hand-over waits at most this long for the loop to go idle: CPython's switch interval,
the most the loop would have waited for the GIL without one."""

STARVED_AFTER = 0.0015
"""A timer due this long (seconds) and not run means the loop cannot get the GIL: longer than
a loop that can is late on its own (its selector rounds a timeout up to the next
millisecond, then the thread wakes)."""

STARVED_HOLD = 0.5
"""After evidence of a starved loop, the worker hands over whenever the loop has work due for
this long (seconds).  Without the hold, prompt hand-overs would erase the evidence and every
other timer would be late again; with it, one timer in a hold runs late if the model keeps
holding the GIL, and a model that stops holding it stops paying within the hold."""

YIELD_GIL_EVERY = 0.001
REPROBE_EVERY = 256  # rare enough to stay out of the loop lag p99 (1 in 256 hand-overs)


class Producer(Protocol):
    """What a policy needs from the channel it serves (see :class:`.channel.Channel`)."""

    @property
    def woken(self) -> asyncio.Future[None] | None:
        """The consumer's waiter this producer last woke."""

    def start_batching(self, every: float) -> None: ...

    def stop_batching(self) -> None: ...


class GilPolicy(Protocol):
    def after_put(self, untaken: int) -> None:
        """Called by the worker after each chunk it handed over; ``untaken``: how many
        earlier chunks the consumer had not taken yet."""


def policy_for(producer: Producer, loop: asyncio.AbstractEventLoop) -> GilPolicy:
    """The policy for a stream whose consumer runs on ``loop``."""
    if can_watch(loop):
        return BatchingHandOver(producer, loop)
    return SleepYielder()


def can_watch(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether :func:`loop_has_work_due` can read this loop (asyncio's own loops)."""
    return (
        isinstance(loop, asyncio.BaseEventLoop)
        and hasattr(loop, "_ready")
        and hasattr(loop, "_scheduled")
    )


def loop_has_work_due(
    loop: asyncio.AbstractEventLoop, own_wake: asyncio.Future[None] | None = None
) -> bool:
    """A callback ready or a timer due on ``loop``: it wants the GIL now.

    A ready callback that only resolves ``own_wake`` (the stream's own consumer, woken for
    its first chunks before batching began) does not count: a batching consumer is served by
    its poll, and handing over for it would make every short reply wait for the loop.

    Called from the worker thread.  Lists and deques are read under the GIL; the loop thread
    may change them between two reads, which can only make the answer stale by one item.
    """
    ready = loop._ready  # type: ignore[attr-defined]
    if ready:
        if own_wake is None or len(ready) > 1:
            return True
        try:
            handle = ready[0]
        except IndexError:  # the loop ran it meanwhile
            return False
        args = handle._args
        if not (args and args[0] is own_wake):
            return True
    scheduled = loop._scheduled  # type: ignore[attr-defined]
    try:
        return bool(scheduled) and scheduled[0]._when <= loop.time()
    except IndexError:  # the loop popped it meanwhile
        return False


def hand_over(loop: asyncio.AbstractEventLoop) -> None:
    """Let ``loop`` run until nothing is ready or due on it, at most :data:`HAND_OVER_WAIT`.

    Waiting on a lock releases the GIL, and the loop releases the lock only from a callback
    that finds nothing else to do, so the worker does not take the GIL back at the loop's
    next system call and leave the rest of its work waiting for another switch interval.
    """
    if not loop.is_running():
        return
    idle = threading.Lock()
    idle.acquire()
    try:
        loop.call_soon_threadsafe(_release_when_idle, loop, idle)
    except RuntimeError:  # closed meanwhile
        return
    idle.acquire(timeout=HAND_OVER_WAIT)


def _release_when_idle(loop: asyncio.AbstractEventLoop, idle: threading.Lock) -> None:
    # Other workers' hand-overs do not count as work: two of them would keep each other
    # waiting until both time out.  A snapshot: other threads append while this runs.
    ready = tuple(loop._ready)  # type: ignore[attr-defined]
    busy = any(handle._callback is not _release_when_idle for handle in ready)
    scheduled = loop._scheduled  # type: ignore[attr-defined]
    if busy or (scheduled and scheduled[0]._when <= loop.time()):
        loop.call_soon(_release_when_idle, loop, idle)
    else:
        idle.release()


class BatchingHandOver:
    """The policy for a consumer on an asyncio loop (see the module docstring)."""

    __slots__ = ("_batching", "_last_put", "_loop", "_producer", "_ready_seen", "_starved_until")

    def __init__(self, producer: Producer, loop: asyncio.AbstractEventLoop) -> None:
        self._producer = producer
        self._loop = loop
        self._batching = False
        self._last_put = -BATCH_EVERY  # so the first chunk is never "fast": handed over at once
        self._ready_seen: object = None
        self._starved_until = 0.0

    def after_put(self, untaken: int) -> None:
        producer, loop = self._producer, self._loop
        # ``untaken`` is not evidence here: a consumer that took everything may have done so
        # only because CPython forced the GIL away from the model.
        now = time.monotonic()
        fast = now - self._last_put < BATCH_EVERY
        self._last_put = now
        if fast != self._batching:
            self._batching = fast
            if fast:
                producer.start_batching(BATCH_EVERY)
            else:
                producer.stop_batching()
        if self._loop_starved():
            self._starved_until = now + STARVED_HOLD
        elif now >= self._starved_until:
            return
        if loop_has_work_due(loop, producer.woken):
            hand_over(loop)
            self._ready_seen = None

    def _loop_starved(self) -> bool:
        """Evidence that the loop cannot get the GIL: a timer overdue by more than
        :data:`STARVED_AFTER`, or the same callback still ready one chunk later."""
        loop = self._loop
        ready = loop._ready  # type: ignore[attr-defined]
        first: object = None
        if ready:
            try:
                first = ready[0]
            except IndexError:  # the loop ran it meanwhile
                first = None
        seen, self._ready_seen = self._ready_seen, first
        if first is not None and first is seen:
            return True
        scheduled = loop._scheduled  # type: ignore[attr-defined]
        try:
            return bool(scheduled) and scheduled[0]._when <= loop.time() - STARVED_AFTER
        except IndexError:  # the loop popped it meanwhile
            return False


class SleepYielder:
    """The policy for loops :func:`loop_has_work_due` cannot read.

    Yields (``sleep(0)``) right after each hand-over while the loop is starved, at most once
    per :data:`YIELD_GIL_EVERY`; an item still untaken when the next one is ready (with no
    yield in between) means it is.  Every :data:`REPROBE_EVERY` yields one is skipped, so a
    model that changes phase (prefill, then decode) is re-learnt.
    """

    __slots__ = ("_holds_gil", "_yielded", "_yielded_at", "_yields")

    def __init__(self) -> None:
        self._holds_gil = False
        self._yielded = False
        self._yielded_at = time.monotonic()
        self._yields = 0

    def after_put(self, untaken: int) -> None:
        if not self._yielded:
            self._holds_gil = untaken > 0
        self._yielded = False
        if not self._holds_gil:
            return
        now = time.monotonic()
        if now - self._yielded_at < YIELD_GIL_EVERY:
            return
        self._yields += 1
        if self._yields % REPROBE_EVERY == 0:
            return  # skip one: the next hand-over tells whether the loop still starves
        time.sleep(0)
        self._yielded = True
        self._yielded_at = now
