"""Serve a prompt on a worker thread: wait for a model slot and a thread slot, then bridge.

The thread path of :mod:`.serving`.  Slots are taken first come, first served (:mod:`.limits`);
the sync generator then runs on a pooled daemon thread, or on the model's dedicated thread with
``affinity=model`` (:mod:`.workers`), and :mod:`.bridge` streams its chunks back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from . import limits, workers
from .bridge import ThreadStream
from .bridge import open_stream as open_thread_stream
from .deadlines import Deadlines, wait_within
from .identity import model_key
from .serving import StreamRequest


async def serve(request: StreamRequest) -> ThreadStream:
    """Start ``request``'s sync generator on a worker thread once its slots are free."""
    config, model_id = request.config, request.model_id
    deadlines = Deadlines.from_settings(config)
    release = await _acquire_slots(request, deadlines)
    if config.affinity == "model":
        key = model_key(request.sync_model)

        # Looked up (and on first use started) inside submit: a thread that fails to start
        # then fails the submit, and open_stream releases the slots.
        def submit(job: workers.Job, stop: workers.Stop) -> None:
            workers.dedicated_thread(key, model_id).submit(job, stop)
    else:

        def submit(job: workers.Job, stop: workers.Stop) -> None:
            workers.start_thread(model_id, job, stop)

    return open_thread_stream(
        model_id,
        request.execute,
        capacity=config.buffer,
        deadlines=deadlines,
        started_at=request.started_at,
        submit=submit,
        on_exit=release,
    )


async def _acquire_slots(request: StreamRequest, deadlines: Deadlines) -> Callable[[], None]:
    """Wait, first come first served, for a model slot and a thread slot; return ``release``."""
    config, model_id, started_at = request.config, request.model_id, request.started_at
    # A model pinned to one dedicated thread runs one prompt at a time: let the others wait
    # in the cancellable FIFO line rather than in that thread's job queue.
    concurrency = 1 if config.affinity == "model" else config.model_concurrency
    model_slots = limits.model_limiter(model_key(request.sync_model), concurrency)
    thread_slots = limits.global_threads
    if not model_slots.try_acquire(concurrency):
        await bounded_wait(model_slots.acquire(concurrency), model_id, deadlines, started_at)
    try:
        if not thread_slots.try_acquire(config.max_threads):
            await bounded_wait(
                thread_slots.acquire(config.max_threads), model_id, deadlines, started_at
            )
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
    acquire: Awaitable[Any], model_id: str, deadlines: Deadlines, started_at: float
) -> None:
    """Await ``acquire`` within the queue timeout and what is left of the response timeout."""
    await wait_within(acquire, deadlines.nearest(model_id, "queue", started_at=started_at))
