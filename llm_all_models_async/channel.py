"""The hand-over between whatever runs a model and its async consumer: ordered, bounded, one lock.

Both servers stream through a :class:`Channel`: the thread bridge's worker thread
(:mod:`.bridge`) and a worker process's reader thread (:mod:`.process.server`) hand chunks
over with it, and the consumer reads them through a :class:`ChannelStream`.  So both keep one
contract:

* Items reach the consumer in the order they were handed over, as soon as they are, or,
  while the producer batches (:meth:`Channel.start_batching`, for items that come close
  together), within :attr:`Channel.poll_every`.  The consumer takes every buffered item in one go
  (one lock round-trip per batch); the producer takes the lock only to claim a waiting
  consumer's waiter, and wakes the consumer's loop after releasing it, so the woken loop
  never blocks on a lock the producer still holds.
* At most ``capacity`` items are out of the producer and not yet consumed: items buffered plus
  the consumer's last batch, which counts until it comes back for more.  :meth:`Channel.put`
  waits for room before returning; :meth:`Channel.offer` never waits, for a producer that
  bounds its read-ahead itself (a worker process's credits).  :attr:`Channel.consumed` counts
  the items the consumer has finished with.
* :meth:`Channel.stop` never blocks: it drops the buffered items, wakes a producer waiting for
  room, and runs the stop callbacks once, outside the lock.  A consumer whose event loop has
  closed stops the channel on the next hand-over.
* After :meth:`Channel.finish`, the consumer gets the remaining items, then the stream's error
  (``StopAsyncIteration`` if none).
* Every deadline of a wait (whole response, first chunk, idle) is computed in
  :meth:`Deadlines.nearest`; the whole-response limit also holds while the consumer takes
  items that are already buffered.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .deadlines import Deadlines, Limit, Phase, wait_within
from .errors import StallTimeoutError

__all__ = ["STOPPED", "Channel", "ChannelStream", "Latch"]

logger = logging.getLogger("llm_all_models_async")

Waker = tuple["asyncio.Future[None]", asyncio.AbstractEventLoop]


class Latch:
    """A flag threads can wait on that is set once and never cleared: ``threading.Event``'s
    ``set``/``is_set``/``wait`` on one lock, held until the flag is set.

    A channel builds one per prompt on the way to its first chunk, where an ``Event`` (a
    ``Condition`` built in Python around a new lock) cost about 3 µs and this a tenth of that.
    """

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        """Set the flag and release every waiter; later calls do nothing."""
        with _latch_guard:  # two threads setting at once must not release the lock twice
            if self._set:
                return
            self._set = True
        self._lock.release()

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set or ``timeout`` seconds pass; returns the flag."""
        if self._set:
            return True
        if self._lock.acquire(True, -1 if timeout is None else max(timeout, 0.0)):
            self._lock.release()  # the next waiter goes through too
            return True
        return self._set


_latch_guard = threading.Lock()


class Channel:
    """State shared by a producer (a worker thread, a worker process's reader thread) and the
    consumer; it references neither of them.

    Every transition is a method here: the producer hands over an item with :meth:`put`
    (which also waits for room) or :meth:`offer`, the consumer takes a batch or registers its
    waiter with :meth:`take`.  A hand-over takes the lock only to claim a waiting consumer's
    waiter, and wakes the consumer's loop *after* releasing it, so the woken loop never
    blocks on a lock the producer still holds.
    """

    def __init__(
        self,
        model_id: str,
        capacity: int,
        stall_timeout: float | None,
        wake_on_start: bool = False,
    ) -> None:
        self.model_id = model_id
        self.wake_on_start = wake_on_start
        self.capacity = capacity
        self.stall_timeout = stall_timeout
        # Re-entrant: the consumer handle's finaliser (stop) may run from a garbage
        # collection triggered on the worker thread while it holds the lock.
        self.lock = threading.RLock()
        self.room = threading.Condition(self.lock)
        self.items: collections.deque[Any] = collections.deque()
        # Items the consumer took in its last batch: still counted against ``capacity`` until
        # it comes back for more, so read-ahead stays bounded however items are batched.
        self.in_hand = 0
        self.consumed = 0  # items the consumer has finished with (taken and come back)
        self.producer_waiting = False
        self.stopped = False
        self.finished = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.waiter_loop: asyncio.AbstractEventLoop | None = None
        # The loop the consumer last took from, and the waiter the producer last woke (the
        # producer's GIL policy watches the loop, but not for that wake-up: see gil.py).
        self.consumer_loop: asyncio.AbstractEventLoop | None = None
        self.woken: asyncio.Future[None] | None = None
        # Not None: the producer is batching (see start_batching); a waiting consumer looks
        # for items this often instead of being woken for each one.
        self.poll_every: float | None = None
        self.closed = Latch()  # set once the producer has closed the model's generator
        self.worker_started_at: float | None = None
        self.pulled_after_stop = 0
        self.high_water = 0
        self._stop_callbacks: list[Callable[[], object]] = []

    # -- consumer side -------------------------------------------------------------------

    def take(self, loop: asyncio.AbstractEventLoop) -> list[Any] | asyncio.Future[None]:
        """Every buffered item, or (none buffered) a future the worker resolves on its next
        hand-over.  Raises the stream's error, or ``StopAsyncIteration`` at the end."""
        self.consumer_loop = loop
        with self.lock:
            items = self.items
            self.consumed += self.in_hand  # the previous batch is done with
            if self.producer_waiting:
                self.room.notify()
            if items:
                return self._batch_locked()
            self.in_hand = 0
            if self.finished or self.stopped:
                if self.error is not None:
                    raise self.error
                raise StopAsyncIteration
            waiter: asyncio.Future[None] = loop.create_future()
            self.waiter, self.waiter_loop = waiter, loop
            if items:  # appended after the check above, maybe before the worker saw the waiter
                self.waiter = self.waiter_loop = None
                return self._batch_locked()
            return waiter

    def _batch_locked(self) -> list[Any]:
        # ``in_hand`` first: a worker reading len(items), then in_hand, without the lock
        # never counts fewer items ahead than there are.
        items = self.items
        count = len(items)
        self.in_hand = count
        popleft = items.popleft
        return [popleft() for _ in range(count)]

    def forget(self, waiter: asyncio.Future[None]) -> None:
        """Withdraw a waiter the consumer stopped waiting on (timeout or cancel)."""
        with self.lock:
            if self.waiter is waiter:
                self.waiter = self.waiter_loop = None

    def stop(self) -> None:
        """Ask the worker to close the generator; never blocks."""
        with self.lock:
            callbacks = self._stop_locked()
        _run_all(callbacks)

    def on_stop(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call ``callback`` (from any thread) once the stream is stopped; at once if it is.

        Returns a function that unregisters it.
        """
        with self.lock:
            if not self.stopped:
                self._stop_callbacks.append(callback)
                return lambda: self._discard_callback(callback)
        callback()
        return lambda: None

    def _discard_callback(self, callback: Callable[[], object]) -> None:
        with self.lock:
            if callback in self._stop_callbacks:
                self._stop_callbacks.remove(callback)

    def _stop_locked(self) -> list[Callable[[], object]]:
        if self.stopped:
            return []
        self.stopped = True
        self.items.clear()
        self.room.notify_all()
        callbacks, self._stop_callbacks = self._stop_callbacks, []
        return callbacks

    # -- worker side ---------------------------------------------------------------------

    def mark_started(self) -> None:
        """Record that the worker has begun (the first-chunk clock starts here)."""
        with self.lock:
            self.worker_started_at = time.monotonic()
            waker = self._claim_waiter_locked() if self.wake_on_start else None
        # a waiting consumer recomputes its first-chunk deadline
        self._wake(waker)

    def put(self, item: Any) -> int:
        """Hand one item to the consumer, then wait until there is room for the next one.

        Returns how many earlier items the consumer had not taken yet (0: it keeps up), or
        :data:`STOPPED` when the stream was stopped (the item is dropped; pull no more).
        """
        untaken = self.offer(item)
        full = untaken != STOPPED and len(self.items) + self.in_hand >= self.capacity
        if full:
            self.announce()  # batching: the consumer must not wait for its poll to make room
            if not self.wait_for_room():
                return STOPPED
        return untaken

    def offer(self, item: Any) -> int:
        """Hand one item to the consumer without waiting for room; returns as :meth:`put`."""
        # The hot path of every stream, without the lock: deque appends are thread-safe, and
        # the consumer registers its waiter, then looks at the items again (see take()), so
        # either it sees this item or this thread sees its waiter.
        if self.stopped:
            self.pulled_after_stop += 1
            return STOPPED
        items = self.items
        untaken = len(items)
        items.append(item)
        if self.waiter is not None and self.poll_every is None:
            with self.lock:
                waker = self._claim_waiter_locked()
            self._wake(waker)
        ahead = len(items) + self.in_hand  # in this order: never an undercount (see take)
        if ahead > self.high_water:
            self.high_water = ahead
        return untaken

    def deliver_buffered(self, waiter: asyncio.Future[None]) -> bool:
        """On the consumer's loop: resolve ``waiter`` if items are buffered and it still
        waits for them (a batching producer did not wake it)."""
        with self.lock:
            if self.waiter is not waiter or not self.items:
                return False
            self.waiter = self.waiter_loop = None
        _resolve(waiter)
        return True

    def announce(self) -> None:
        """Wake a waiting consumer now, whether or not the producer is batching."""
        if self.waiter is not None:
            with self.lock:
                waker = self._claim_waiter_locked()
            self._wake(waker)

    def start_batching(self, every: float) -> None:
        """Stop waking the consumer for each item; it looks for items every ``every`` s.

        The consumer's current waiter, registered without that timer, is woken, so every
        later wait has one.
        """
        self.poll_every = every
        self.announce()

    def stop_batching(self) -> None:
        """Wake the consumer for each item again (and now, for what is buffered)."""
        self.poll_every = None
        self.announce()

    def wait_for_room(self) -> bool:
        """Block until the buffer has room; False when the stream was stopped meanwhile."""
        with self.lock:
            stall = self.stall_timeout
            deadline = None if stall is None else time.monotonic() + stall
            callbacks: list[Callable[[], object]] = []
            while len(self.items) + self.in_hand >= self.capacity and not self.stopped:
                self.producer_waiting = True
                if deadline is None or stall is None:
                    self.room.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.error = StallTimeoutError(self.model_id, stall)
                    callbacks = self._stop_locked()
                    break
                self.room.wait(remaining)
            self.producer_waiting = False
            still_running = not self.stopped
        _run_all(callbacks)
        return still_running

    def finish(self, error: BaseException | None) -> None:
        """Record the end of the stream (``error`` None: exhausted normally)."""
        with self.lock:
            self.finished = True
            if error is not None and self.error is None:
                self.error = error
            waker = self._claim_waiter_locked()
            self._stop_callbacks.clear()
        self._wake(waker)

    def _claim_waiter_locked(self) -> Waker | None:
        waiter, loop = self.waiter, self.waiter_loop
        if waiter is None or loop is None:
            return None
        self.waiter = self.waiter_loop = None
        return waiter, loop

    def _wake(self, waker: Waker | None) -> None:
        if waker is None:
            return
        waiter, loop = waker
        self.woken = waiter
        try:
            loop.call_soon_threadsafe(_resolve, waiter)
        except RuntimeError:  # the consumer's loop is closed: nobody is listening any more
            self.stop()


def _run_all(callbacks: list[Callable[[], object]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:
            logger.exception("llm-async: a stop callback failed")


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


STOPPED = -1


class _Poll:
    """While a consumer waits on a batching producer, look for buffered items every
    ``every`` seconds; the wait itself, and so its deadline, is left alone."""

    __slots__ = ("_channel", "_every", "_handle", "_loop", "_waiter")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        channel: Channel,
        waiter: asyncio.Future[None],
        every: float,
    ) -> None:
        self._loop, self._channel, self._waiter, self._every = loop, channel, waiter, every
        self._handle = loop.call_later(every, self._look)

    def _look(self) -> None:
        if not self._waiter.done() and not self._channel.deliver_buffered(self._waiter):
            self._handle = self._loop.call_later(self._every, self._look)

    def cancel(self) -> None:
        self._handle.cancel()


class ChannelStream:
    """The consumer's handle on one channel (:class:`~.serving.Stream`): batches of items.

    Each server subclasses it with its own ``stop``; :meth:`_took` runs after every take (a
    batch or a registered waiter), where a server returns flow-control credit.
    """

    def __init__(self, channel: Channel, deadlines: Deadlines, started_at: float) -> None:
        self._channel = channel
        self._deadlines = deadlines
        self._started_at = started_at
        self._received_batches = 0
        self._unbounded = (
            deadlines.timeout is None
            and deadlines.first_chunk_timeout is None
            and deadlines.idle_timeout is None
        )

    @property
    def channel(self) -> Channel:
        return self._channel

    def _took(self) -> None:
        """Called after each take from the channel; nothing to do by default."""

    async def next_batch(self) -> list[Any]:
        """Every item buffered now (at least one), waiting for the worker if there is none.

        Raises the iterator's exception, an :class:`AdapterTimeoutError`, or
        ``StopAsyncIteration`` at the end.
        """
        channel = self._channel
        loop = asyncio.get_running_loop()
        timed = self._deadlines.timeout is not None
        while True:
            if timed:
                overdue = self._limit("handover")
                if overdue is not None and overdue.remaining <= 0:
                    raise overdue.error
            got = channel.take(loop)
            self._took()
            if isinstance(got, list):
                self._received_batches += 1
                return got
            poll_every = channel.poll_every  # read after take(): see Channel.start_batching
            poll = None if poll_every is None else _Poll(loop, channel, got, poll_every)
            try:
                if self._unbounded:  # the common case: no limit to compute per wait
                    await got
                else:
                    phase: Phase = "later" if self._received_batches else "first"
                    await wait_within(got, self._limit(phase))
            except BaseException:
                channel.forget(got)
                raise
            finally:
                if poll is not None:
                    poll.cancel()

    def _limit(self, phase: Phase) -> Limit | None:
        return self._deadlines.nearest(
            self._channel.model_id,
            phase,
            started_at=self._started_at,
            worker_started_at=self._channel.worker_started_at,
        )
