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
* The worker hands the GIL to the loop only when the model starves it, and then only when
  the loop has work due (see :mod:`.gil`), so a model that releases the GIL while it
  computes never waits for the loop.  This keeps the per-item cost near that of a native
  async generator and the throughput of a 1 ms/token model near that of llm's sync path.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import cancellation, gil
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
        policy: gil.GilPolicy | None = None
        for item in source:
            untaken = channel.put(item)
            if untaken == STOPPED:
                break
            if policy is None:
                loop = channel.consumer_loop
                if loop is None:  # the consumer has not asked for an item yet
                    continue
                policy = gil.policy_for(channel, loop)
            policy.after_put(untaken)
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
    submit: Callable[[Callable[[], None], Callable[[], None]], None],
    on_exit: Callable[[], None],
) -> ThreadStream:
    """Start ``make_iterator`` on a worker (via ``submit``) and return the consumer handle.

    ``submit(job, stop)`` hands the job to a thread; ``stop`` (the channel's) is how the
    thread's owner ends it at interpreter exit.  ``on_exit`` runs on the worker once the
    iterator is closed, whatever happened; it releases the slots the stream holds.  If
    ``submit`` fails, it runs here instead.
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
        submit(job, channel.stop)
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
