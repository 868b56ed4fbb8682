"""One stream: a sync iterator run on a worker thread, read from async code with backpressure.

The thread path's producer side of a :class:`~.channel.Channel`; the channel's contract holds
(order, bounded read-ahead, batches, deadlines, a stop that never blocks).  On top of it:

* The sync iterator is created, advanced and closed on one worker thread, inside a copy of
  the caller's ``contextvars`` context; never on the event loop thread.
* With ``capacity`` items out of the generator and not yet consumed, the worker waits *before*
  pulling the next one, so a stalled consumer pauses the model instead of filling memory.
* :meth:`ThreadStream.stop` returns at once.  The worker notices the stop flag after at most
  the item in flight (which is discarded), pulls nothing more, and closes the generator on its
  own thread, so ``GeneratorExit`` is raised at the model's ``yield`` and its ``finally`` runs.
* An exception raised by the iterator reaches the consumer unchanged (type, message,
  traceback) after the items produced before it.
* When the consumer handle is garbage collected without a stop, the stream stops itself.
* The worker yields the GIL to the loop only when the model starves it (see
  :class:`_GilYielder`), so a model that releases the GIL while it computes never waits for
  the loop.  This keeps the per-item cost near that of a native async generator and the
  throughput of a 1 ms/token model near that of llm's sync path.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import cancellation
from .channel import STOPPED, Channel, ChannelStream
from .deadlines import Deadlines, Limit, wait_within

__all__ = [
    "Channel",
    "ChannelStream",
    "Deadlines",
    "Limit",
    "ThreadStream",
    "open_stream",
    "wait_within",
]

logger = logging.getLogger("llm_all_models_async")


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


class ThreadStream(ChannelStream):
    """The consumer's handle on a stream run on a worker thread."""

    def __del__(self) -> None:
        # Dropped without stop() (e.g. the event loop went away): stop anyway.  ``__del__``
        # rather than ``weakref.finalize``, which costs a few µs per stream to register;
        # Channel.stop() is idempotent and never blocks.
        self._channel.stop()

    def stop(self) -> None:
        """Release the worker; returns at once (see the module contract)."""
        channel = self._channel
        channel.stop()
        warn_after = self._deadlines.stuck_warning
        if warn_after is not None and not channel.closed.is_set():
            _watch_for_stuck_worker(channel, warn_after)


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
