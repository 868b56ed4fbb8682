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
* The worker wakes the loop only when the consumer is actually waiting, and the consumer takes
  every buffered item in one go (one lock round-trip per batch, not per item), which keeps the
  per-item cost near that of a native async generator.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import cancellation
from .errors import (
    AdapterTimeoutError,
    FirstChunkTimeoutError,
    IdleTimeoutError,
    ResponseTimeoutError,
    StallTimeoutError,
)

logger = logging.getLogger("llm_all_models_async")

_END = object()


@dataclass(frozen=True)
class Deadlines:
    """The consumer-side time limits of one stream, in seconds (None: no limit)."""

    timeout: float | None = None
    first_chunk_timeout: float | None = None
    idle_timeout: float | None = None
    stall_timeout: float | None = None
    stuck_warning: float | None = None


class Channel:
    """State shared by the worker and the consumer; it references neither of them."""

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

    # -- consumer side -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to close the generator; never blocks."""
        with self.lock:
            if self.stopped:
                return
            self.stopped = True
            self.items.clear()
            self.room.notify_all()

    # -- worker side ---------------------------------------------------------------------

    def wait_for_room(self) -> bool:
        """Block until the buffer has room; False when the stream was stopped meanwhile."""
        with self.lock:
            deadline = None
            if self.stall_timeout is not None:
                deadline = time.monotonic() + self.stall_timeout
            while len(self.items) + self.in_hand >= self.capacity and not self.stopped:
                self.producer_waiting = True
                if deadline is None:
                    self.room.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.stopped = True
                    self.items.clear()
                    self.error = StallTimeoutError(self.model_id, self.stall_timeout)
                    break
                self.room.wait(remaining)
            self.producer_waiting = False
            return not self.stopped

    def put(self, item: Any) -> bool:
        """Hand one item to the consumer; False (item dropped) when the stream was stopped."""
        with self.lock:
            if self.stopped:
                self.pulled_after_stop += 1
                return False
            self.items.append(item)
            ahead = len(self.items) + self.in_hand
            if ahead > self.high_water:
                self.high_water = ahead
            self._wake_locked()
            return True

    def mark_started(self) -> None:
        """Record that the worker has begun (the first-chunk clock starts here)."""
        with self.lock:
            self.worker_started_at = time.monotonic()
            if self.wake_on_start:
                self._wake_locked()  # a waiting consumer recomputes its first-chunk deadline

    def finish(self, error: BaseException | None) -> None:
        """Record the end of the stream (``error`` None: exhausted normally)."""
        with self.lock:
            self.finished = True
            if error is not None and self.error is None:
                self.error = error
            self._wake_locked()

    def _wake_locked(self) -> None:
        waiter, loop = self.waiter, self.waiter_loop
        if waiter is None or loop is None:
            return
        self.waiter = self.waiter_loop = None
        try:
            loop.call_soon_threadsafe(_resolve, waiter)
        except RuntimeError:  # the consumer's loop is closed: nobody is listening any more
            self.stopped = True
            self.items.clear()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _produce(
    channel: Channel,
    make_iterator: Callable[[], Iterable[Any]],
    on_exit: Callable[[], None],
) -> None:
    """Worker body: create, advance and close the iterator on this thread."""
    cancellation.bind(channel)
    iterator: Any = None
    error: BaseException | None = None
    try:
        channel.mark_started()
        if channel.stopped:  # stopped while this job waited for its thread
            return
        iterator = make_iterator()
        source = iter(iterator)
        yielded_gil_at = time.monotonic()
        while channel.wait_for_room():
            try:
                item = next(source)
            except StopIteration:
                break
            if not channel.put(item):
                break
            # A pure-Python model holds the GIL for the whole switch interval (5 ms); give the
            # event loop a turn at least every millisecond so it stays responsive.
            now = time.monotonic()
            if now - yielded_gil_at > 0.001:
                time.sleep(0)
                yielded_gil_at = now
    except BaseException as exc:
        error = exc
    finally:
        try:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()
                except RuntimeError as exc:
                    # "generator ignored GeneratorExit": the model kept yielding after close.
                    # Log text only: a kept log record must not keep the generator's frame alive.
                    message = str(exc)
                    logger.warning("model %r did not close cleanly: %s", channel.model_id, message)
                except BaseException as exc:
                    if error is None and not channel.stopped:
                        error = exc
                    else:
                        message = repr(exc)
                        logger.warning(
                            "model %r raised while closing: %s", channel.model_id, message
                        )
        finally:
            channel.finish(error)
            cancellation.bind(None)
            channel.closed.set()
            on_exit()


class ThreadStream:
    """The consumer's handle on one stream: ``async for item in stream``."""

    def __init__(self, channel: Channel, deadlines: Deadlines, started_at: float) -> None:
        self._channel = channel
        self._deadlines = deadlines
        self._started_at = started_at
        self._received_batches = 0
        self._pending: collections.deque[Any] = collections.deque()
        # Dropped without stop() (e.g. the event loop went away): stop anyway.
        self._finalizer = weakref.finalize(self, channel.stop)

    @property
    def channel(self) -> Channel:
        return self._channel

    def stop(self) -> None:
        """Release the worker; returns at once (see the module contract)."""
        self._finalizer()
        channel = self._channel
        warn_after = self._deadlines.stuck_warning
        if warn_after is not None and not channel.closed.is_set():
            _watch_for_stuck_worker(channel, warn_after)

    def __aiter__(self) -> ThreadStream:
        return self

    async def __anext__(self) -> Any:
        if not self._pending:
            self._pending.extend(await self.next_batch())
        return self._pending.popleft()

    async def next_batch(self) -> list[Any]:
        """Every item buffered now (at least one), waiting for the worker if there is none.

        Raises the iterator's exception, or ``StopAsyncIteration`` at the end.
        """
        channel = self._channel
        while True:
            with channel.lock:
                channel.in_hand = 0  # the previous batch has been consumed
                if channel.items:
                    batch = list(channel.items)
                    channel.items.clear()
                    channel.in_hand = len(batch)
                    if channel.producer_waiting:
                        channel.room.notify()
                    self._received_batches += 1
                    return batch
                if channel.producer_waiting:
                    channel.room.notify()
                if channel.finished or channel.stopped:
                    error = channel.error
                    if error is not None:
                        raise error
                    raise StopAsyncIteration
                loop = asyncio.get_running_loop()
                waiter = loop.create_future()
                channel.waiter, channel.waiter_loop = waiter, loop
            await self._wait(waiter)

    async def _wait(self, waiter: asyncio.Future[None]) -> None:
        limit = self._limit()
        if limit is None:
            await waiter
            return
        remaining, error = limit
        try:
            await asyncio.wait_for(waiter, max(remaining, 0))
        except asyncio.TimeoutError:
            with self._channel.lock:
                if self._channel.waiter is waiter:
                    self._channel.waiter = self._channel.waiter_loop = None
            raise error from None

    def _limit(self) -> tuple[float, AdapterTimeoutError] | None:
        """The nearest deadline for this wait and the error it raises, if any."""
        d, now, model_id = self._deadlines, time.monotonic(), self._channel.model_id
        candidates: list[tuple[float, AdapterTimeoutError]] = []
        if d.timeout is not None:
            candidates.append(
                (self._started_at + d.timeout - now, ResponseTimeoutError(model_id, d.timeout))
            )
        worker_started_at = self._channel.worker_started_at
        if (
            self._received_batches == 0
            and d.first_chunk_timeout is not None
            and worker_started_at is not None
        ):
            candidates.append(
                (
                    worker_started_at + d.first_chunk_timeout - now,  # type: ignore[operator]
                    FirstChunkTimeoutError(model_id, d.first_chunk_timeout),
                )
            )
        if self._received_batches > 0 and d.idle_timeout is not None:
            candidates.append((d.idle_timeout, IdleTimeoutError(model_id, d.idle_timeout)))
        if not candidates:
            return None
        return min(candidates, key=lambda c: c[0])


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
    releases the slots the stream holds.
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
