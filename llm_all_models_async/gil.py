"""How a worker thread that runs a model shares the GIL with the event loop it streams to.

A model computing in pure Python holds the GIL between its chunks.  The loop then cannot run
at all: not to take a chunk, not to fire a timer.  CPython only forces the GIL away from it
after the switch interval (5 ms), and the loop needs the GIL again after every system call
it makes, so its lag adds up one switch interval after another.  Handing the GIL over costs
too: each hand-over wakes the other thread, which takes 35-130 µs on a VM (see
``python -m benchmarks --only wakeup``), far more than handing over a chunk.

So the worker learns, per stream, whether the loop keeps up with the model (a chunk handed
over is taken before the next one is ready) and, while it does not, it *batches*:

* It stops waking the consumer for every chunk; the consumer looks for chunks itself every
  :data:`BATCH_EVERY` (a timer on its loop, :attr:`.channel.Channel.poll_every`).  A model
  that stops holding the GIL, say blocked in a C call or on a socket, therefore delivers
  what it produced within that time.
* After each chunk it looks at the loop (:func:`loop_has_work_due`): a timer that is due or
  a callback that is ready, which includes the consumer's poll.  Only then does it hand the
  GIL over, and it waits (:func:`hand_over`) until the loop has nothing left to do, at most
  :data:`HAND_OVER_WAIT`, so one hand-over serves the loop completely instead of losing the
  GIL back at its next system call.

A chunk taken before the next one is ready switches batching off again.  What the loop holds
is read from the private attributes of asyncio's own loops (``_ready``, ``_scheduled``),
read-only and under the GIL; other loops (uvloop) get :class:`SleepYielder` instead, which
yields with ``time.sleep(0)`` once a millisecond while the loop is starved.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Protocol

__all__ = [
    "BATCH_EVERY",
    "HAND_OVER_WAIT",
    "BatchingHandOver",
    "GilPolicy",
    "SleepYielder",
    "can_watch",
    "hand_over",
    "loop_has_work_due",
    "policy_for",
]

BATCH_EVERY = 0.01
"""While batching, the consumer looks for chunks this often (seconds)."""

HAND_OVER_WAIT = 0.005
"""A hand-over waits at most this long for the loop to go idle: CPython's switch interval,
the most the loop would have waited for the GIL without one."""

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

    __slots__ = ("_batching", "_handed_over", "_loop", "_producer")

    def __init__(self, producer: Producer, loop: asyncio.AbstractEventLoop) -> None:
        self._producer = producer
        self._loop = loop
        self._batching = False
        self._handed_over = False

    def after_put(self, untaken: int) -> None:
        producer, loop = self._producer, self._loop
        if not self._handed_over:  # the loop had a whole chunk's time to take the last one
            starved = untaken > 0
            if starved != self._batching:
                self._batching = starved
                if starved:
                    producer.start_batching(BATCH_EVERY)
                else:
                    producer.stop_batching()
        self._handed_over = False
        if self._batching and loop_has_work_due(loop, producer.woken):
            hand_over(loop)
            self._handed_over = True


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
