"""One stream: a sync iterator run on a worker thread, read from async code with backpressure.

Contract (what every stream guarantees):

* The sync iterator is created, advanced and closed on one worker thread, inside a copy of
  the caller's ``contextvars`` context; never on the event loop thread.
* Items reach the consumer in order, as soon as they are produced.  At most ``capacity`` items
  are out of the generator and not yet consumed; with that many the worker waits *before*
  pulling the next one, so a stalled consumer pauses the model instead of filling memory.
* :meth:`ThreadStream.stop` returns at once.  The worker notices the stop flag after at most
  the item in flight (which is discarded), pulls nothing more, and closes the generator on its
  own thread, so ``GeneratorExit`` is raised at the model's ``yield`` and its ``finally`` runs.
* An exception raised by the iterator reaches the consumer unchanged (type, message,
  traceback) after the items produced before it.
* When the consumer handle is garbage collected without a stop, the stream stops itself.
* Every deadline of a stream (whole response, first chunk, idle, and the slot wait before it)
  is computed in :meth:`Deadlines.nearest`; the whole-response limit also holds while the
  consumer takes chunks that are already buffered.
* The worker hands over an item without a lock and wakes the loop only when the consumer is
  actually waiting, after any lock is released; the consumer takes every buffered item in one
  go (one lock round-trip per batch).  The worker yields the GIL to the loop only when the
  model starves it (see :class:`_GilYielder`), so a model that releases the GIL while it
  computes never waits for the loop.  This keeps the per-item cost near that of a native
  async generator and the throughput of a 1 ms/token model at that of llm's sync path.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import cancellation
from .deadlines import Deadlines, Limit, Phase, wait_within
from .errors import StallTimeoutError

__all__ = ["Channel", "Deadlines", "Limit", "ThreadStream", "open_stream", "wait_within"]

logger = logging.getLogger("llm_all_models_async")


Waker = tuple["asyncio.Future[None]", asyncio.AbstractEventLoop]


class Channel:
    """State shared by the worker and the consumer; it references neither of them.

    Every transition is a method here: the worker hands over an item with :meth:`put`
    (which also waits for room), the consumer takes a batch or registers its waiter with
    :meth:`take`.  ``put`` takes the lock only to claim a waiting consumer's waiter, and wakes
    the consumer's loop *after* releasing it, so the woken loop never blocks on a lock the
    worker still holds.
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
        self.producer_waiting = False
        self.stopped = False
        self.finished = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.waiter_loop: asyncio.AbstractEventLoop | None = None
        self.closed = threading.Event()
        self.worker_started_at: float | None = None
        self.pulled_after_stop = 0
        self.high_water = 0
        self._stop_callbacks: list[Callable[[], object]] = []

    # -- consumer side -------------------------------------------------------------------

    def take(self, loop: asyncio.AbstractEventLoop) -> list[Any] | asyncio.Future[None]:
        """Every buffered item, or (none buffered) a future the worker resolves on its next
        hand-over.  Raises the stream's error, or ``StopAsyncIteration`` at the end."""
        with self.lock:
            items = self.items
            if self.producer_waiting:
                self.room.notify()  # the previous batch has been consumed
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
        # The hot path of every stream, without the lock: deque appends are thread-safe, and
        # the consumer registers its waiter, then looks at the items again (see take()), so
        # either it sees this item or this thread sees its waiter.
        if self.stopped:
            self.pulled_after_stop += 1
            return STOPPED
        items = self.items
        untaken = len(items)
        items.append(item)
        if self.waiter is not None:
            with self.lock:
                waker = self._claim_waiter_locked()
            self._wake(waker)
        ahead = len(items) + self.in_hand  # in this order: never an undercount (see take)
        if ahead > self.high_water:
            self.high_water = ahead
        if ahead >= self.capacity and not self.wait_for_room():
            return STOPPED
        return untaken

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


class _GilYielder:
    """Decides when the worker hands the GIL to the event loop, from what the loop managed.

    A model computing in pure Python holds the GIL until the switch interval (5 ms by
    default) forces it out, so the loop could neither take the item just handed over nor run
    its timers: the worker yields (``sleep(0)``) right after each hand-over, at most once per
    :data:`YIELD_GIL_EVERY`.  A model computing in native code that releases the GIL (torch,
    llama.cpp, hashlib) lets the loop take each item while it computes the next; yielding
    there would only make the worker wait while the loop processes the item, so it does not.

    Which kind of model this is, is learnt: an item still untaken when the next one is ready
    (with no yield in between) means the loop was starved.  Every :data:`REPROBE_EVERY`
    yields one is skipped, so a model that changes phase (prefill, then decode) is re-learnt.
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


YIELD_GIL_EVERY = 0.001
REPROBE_EVERY = 256  # rare enough to stay out of the loop lag p99 (1 in 256 hand-overs)


def _produce(
    channel: Channel,
    make_iterator: Callable[[], Iterable[Any]],
    on_exit: Callable[[], None],
) -> None:
    """Worker body: create, advance and close the iterator on this thread."""
    cancellation.bind(channel)
    source: Iterator[Any] | None = None
    error: BaseException | None = None
    try:
        channel.mark_started()
        if channel.stopped:  # stopped while this job waited for its thread
            return
        source = iter(make_iterator())
        yielder = _GilYielder()
        for item in source:
            untaken = channel.put(item)
            if untaken == STOPPED:
                break
            yielder.after_put(untaken)
    except BaseException as exc:
        error = exc
    finally:
        try:
            error = _close(channel, source, error)
        finally:
            channel.finish(error)
            cancellation.bind(None)
            channel.closed.set()
            on_exit()


def _close(
    channel: Channel, source: Iterator[Any] | None, error: BaseException | None
) -> BaseException | None:
    """Close the iterator the worker advanced (not merely what ``execute()`` returned, which
    may be an iterable whose iterator is a different object); returns the stream's error."""
    close = getattr(source, "close", None)
    if close is None:
        return error
    try:
        close()
    except RuntimeError as exc:
        # "generator ignored GeneratorExit": the model kept yielding after close.
        # Log text only: a kept log record must not keep the generator's frame alive.
        message = str(exc)
        logger.warning("model %r did not close cleanly: %s", channel.model_id, message)
    except BaseException as exc:
        if error is None and not channel.stopped:
            return exc
        message = repr(exc)
        logger.warning("model %r raised while closing: %s", channel.model_id, message)
    return error


class ThreadStream:
    """The consumer's handle on one stream (:class:`~.serving.Stream`): batches of items."""

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

    def __del__(self) -> None:
        # Dropped without stop() (e.g. the event loop went away): stop anyway.  ``__del__``
        # rather than ``weakref.finalize``, which costs a few µs per stream to register;
        # Channel.stop() is idempotent and never blocks.
        self._channel.stop()

    @property
    def channel(self) -> Channel:
        return self._channel

    def stop(self) -> None:
        """Release the worker; returns at once (see the module contract)."""
        channel = self._channel
        channel.stop()
        warn_after = self._deadlines.stuck_warning
        if warn_after is not None and not channel.closed.is_set():
            _watch_for_stuck_worker(channel, warn_after)

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
            if isinstance(got, list):
                self._received_batches += 1
                return got
            try:
                if self._unbounded:  # the common case: no limit to compute per wait
                    await got
                else:
                    phase: Phase = "later" if self._received_batches else "first"
                    await wait_within(got, self._limit(phase))
            except BaseException:
                channel.forget(got)
                raise

    def _limit(self, phase: Phase) -> Limit | None:
        return self._deadlines.nearest(
            self._channel.model_id,
            phase,
            started_at=self._started_at,
            worker_started_at=self._channel.worker_started_at,
        )


def open_stream(
    model_id: str,
    make_iterator: Callable[[], Iterable[Any]],
    *,
    capacity: int,
    deadlines: Deadlines,
    started_at: float,
    submit: Callable[[Callable[[], None]], None],
    on_exit: Callable[[], None],
) -> ThreadStream:
    """Start ``make_iterator`` on a worker (via ``submit``) and return the consumer handle.

    ``on_exit`` runs on the worker once the iterator is closed, whatever happened; it
    releases the slots the stream holds.  If ``submit`` fails, it runs here instead.
    """
    channel = Channel(
        model_id,
        capacity,
        deadlines.stall_timeout,
        wake_on_start=deadlines.first_chunk_timeout is not None,
    )
    context = contextvars.copy_context()
    stream = ThreadStream(channel, deadlines, started_at)

    def job() -> None:
        context.run(_produce, channel, make_iterator, on_exit)

    try:
        submit(job)
    except BaseException:
        stream.stop()
        on_exit()
        raise
    return stream


def _watch_for_stuck_worker(channel: Channel, after: float) -> None:
    """Log once if a stopped worker is still inside the model ``after`` seconds later."""

    def check() -> None:
        if not channel.closed.wait(after):
            logger.warning(
                "model %r: a cancelled stream's worker thread is still busy after %gs; "
                "a blocking next() cannot be interrupted (plugins can poll "
                "llm_all_models_async.cancelled())",
                channel.model_id,
                after,
            )

    threading.Thread(target=check, name="llm-async-watchdog", daemon=True).start()
