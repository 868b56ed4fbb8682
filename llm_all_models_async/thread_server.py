"""Serve a prompt on a worker thread: wait for a model slot and a thread slot, then bridge.

The thread path of :mod:`.serving`.  Slots are taken first come, first served (:mod:`.limits`);
the sync generator then runs on a fresh daemon thread, or on the model's dedicated thread with
``affinity=model`` (:mod:`.workers`), and :mod:`.bridge` streams its chunks back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import limits, workers
from .bridge import Deadlines, ThreadStream
from .bridge import open_stream as open_thread_stream
from .errors import QueueTimeoutError, ResponseTimeoutError
from .identity import model_key
from .serving import StreamRequest
from .settings import Settings


async def serve(request: StreamRequest) -> ThreadStream:
    """Start ``request``'s sync generator on a worker thread once its slots are free."""
    config, model_id = request.config, request.model_id
    release = await _acquire_slots(request)
    if config.affinity == "model":
        submit = workers.dedicated_thread(model_key(request.sync_model), model_id).submit
    else:

        def submit(job: workers.Job) -> None:
            workers.start_thread(model_id, job)

    return open_thread_stream(
        model_id,
        request.execute,
        capacity=config.buffer,
        deadlines=Deadlines(
            timeout=config.timeout,
            first_chunk_timeout=config.first_chunk_timeout,
            idle_timeout=config.idle_timeout,
            stall_timeout=config.stall_timeout,
            stuck_warning=config.stuck_warning,
        ),
        started_at=request.started_at,
        submit=submit,
        on_exit=release,
    )


async def _acquire_slots(request: StreamRequest) -> Callable[[], None]:
    """Wait, first come first served, for a model slot and a thread slot; return ``release``."""
    config, model_id, started_at = request.config, request.model_id, request.started_at
    # A model pinned to one dedicated thread runs one prompt at a time: let the others wait
    # in the cancellable FIFO line rather than in that thread's job queue.
    concurrency = 1 if config.affinity == "model" else config.model_concurrency
    model_slots = limits.model_limiter(model_key(request.sync_model), concurrency)
    thread_slots = limits.global_threads
    await bounded_wait(model_slots.acquire(concurrency), model_id, config, started_at)
    try:
        await bounded_wait(thread_slots.acquire(config.max_threads), model_id, config, started_at)
    except BaseException:
        model_slots.release()
        raise
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            thread_slots.release()
            model_slots.release()

    return release


async def bounded_wait(
    acquire: Awaitable[Any], model_id: str, config: Settings, started_at: float
) -> None:
    """Await ``acquire`` within the queue timeout and what is left of the response timeout."""
    limits_: list[tuple[float, Exception]] = []
    if config.queue_timeout is not None:
        limits_.append(
            (
                config.queue_timeout - (time.monotonic() - started_at),
                QueueTimeoutError(model_id, config.queue_timeout),
            )
        )
    if config.timeout is not None:
        limits_.append(
            (
                started_at + config.timeout - time.monotonic(),
                ResponseTimeoutError(model_id, config.timeout),
            )
        )
    if not limits_:
        await acquire
        return
    remaining, error = min(limits_, key=lambda item: item[0])
    try:
        await asyncio.wait_for(acquire, max(remaining, 0))
    except asyncio.TimeoutError:
        raise error from None
