"""Serve a prompt in a warm worker process: the ``process`` path of :mod:`..serving`.

Contract (on top of the seam's):

* A prompt first waits, first come first served, for one of its model's
  ``LLM_ASYNC_MODEL_CONCURRENCY`` slots (within the queue and response timeouts), then takes an
  idle worker of its model or starts one; a worker serves one prompt at a time.
* The worker pulls a chunk only with a credit: it starts with ``LLM_ASYNC_BUFFER`` and gets one
  back per chunk the consumer has finished with (returned in groups of half the buffer), so at
  most that many chunks are out of the generator and not yet consumed, wherever they are
  (worker, socket, parent buffer).
* ``stop()`` (cancel, timeout, close, abandoned stream) returns at once and sends ``STOP``: the
  worker closes the generator at its next ``yield``.  A worker still inside the model
  ``LLM_ASYNC_KILL_AFTER`` seconds later is killed, and the slot is freed when it has exited.
* The model's exception is raised again in the parent (see :mod:`.wire`) after the chunks
  before it; a worker that dies raises :class:`~llm_all_models_async.errors.WorkerCrashedError`
  after the chunks it sent.  A worker that dies before it has begun the prompt (it was stopped
  or died while idle just as it was taken) never ran the model: the prompt goes to another
  worker instead (at most twice).
* Every timeout is the thread path's (:meth:`~..deadlines.Deadlines.nearest`): the queue, a
  worker's start, the first and each later chunk; the whole-response limit also holds for
  chunks already buffered, so a consumer slower than the model still times out.
* ``execute_tool_call`` from the worker runs on the parent's response view (the event loop)
  in a helper thread, so the channel keeps being read while the tool runs.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from .. import limits
from ..deadlines import Deadlines, Phase, wait_within
from ..errors import StallTimeoutError, WorkerCrashedError
from ..identity import model_key
from ..serving import StreamRequest
from . import protocol, timers, wire
from .handle import WorkerProcess
from .pool import pool_for

logger = logging.getLogger("llm_all_models_async")


class _Job:
    """State of one prompt shared by the worker's reader thread and the consumer.

    It references neither the consumer handle nor the async response (only the weak view),
    so an abandoned response can be collected, which stops the job.
    """

    def __init__(self, request: StreamRequest, worker: WorkerProcess, release: Callable[[], None]):
        self.model_id = request.model_id
        self.view = request.response
        self.kill_after = request.config.kill_after
        self.worker = worker
        self.number = 0
        self.lock = threading.Lock()
        self.items: collections.deque[Any] = collections.deque()
        self.in_hand = 0
        self.stopped = False
        self.finished = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.waiter_loop: asyncio.AbstractEventLoop | None = None
        self.sent_at: float | None = None
        self.started = False  # the worker has begun this prompt (it may have run the model)
        self.unstarted = False  # the worker died before beginning it: safe to send again
        self.worker_stall_timeout = request.config.stall_timeout
        self.release = release  # idempotent: frees the model's slot

    # -- reader thread -------------------------------------------------------------------

    def on_chunk(self, chunk: Any) -> None:
        with self.lock:
            if self.stopped:
                return
            self.items.append(chunk)
            consumer_gone = not self._wake_locked()
        if consumer_gone:
            self.stop()

    def on_op(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            if name == "setattr":
                setattr(self.view, args[0], args[1])
            elif name in ("set_usage", "add_tool_call", "set_resolved_model"):
                getattr(self.view, name)(*args, **kwargs)
        except Exception as error:  # the response was dropped: nobody wants the result
            logger.debug("model %r: response write %s not applied: %r", self.model_id, name, error)

    def on_tool_call(self, tool_call: Any) -> None:
        number, worker, view = self.number, self.worker, self.view

        def run() -> None:
            try:
                result = view.execute_tool_call(tool_call)
                reply = (True, wire._portable_tool_result(result))
            except BaseException as error:
                reply = (False, wire.encode_exception(error))
            worker.send(protocol.TOOL_RESULT, number, reply)

        threading.Thread(target=run, name="llm-async-tool-call", daemon=True).start()

    def on_end(self, outcome: dict[str, Any]) -> None:
        error: BaseException | None = None
        if outcome["stalled"]:
            error = StallTimeoutError(self.model_id, self.worker_stall_timeout or 0.0)
        elif outcome["error"] is not None:
            error = wire.decode_exception(outcome["error"], self.model_id)
        self._finish(error)

    def on_started(self) -> None:
        self.started = True

    def on_crash(self, error: WorkerCrashedError) -> None:
        if self.stopped:
            logger.info("model %r: %s", self.model_id, error)
        if not self.started and not self.stopped:
            # The prompt never reached the model: the consumer sends it to another worker,
            # still holding the model's slot.
            with self.lock:
                self.unstarted = True
                self.finished = True
                self.error = error  # raised if it cannot be sent again
                self._wake_locked()
            return
        self._finish(error)

    def _finish(self, error: BaseException | None) -> None:
        with self.lock:
            self.finished = True
            if error is not None and self.error is None and not self.stopped:
                self.error = error
            self._wake_locked()
        self.release()

    def _wake_locked(self) -> bool:
        """Wake a waiting consumer; False when its event loop is closed (nobody listens)."""
        waiter, loop = self.waiter, self.waiter_loop
        if waiter is None or loop is None:
            return True
        self.waiter = self.waiter_loop = None
        try:
            loop.call_soon_threadsafe(_resolve, waiter)
        except RuntimeError:
            return False
        return True

    # -- consumer side -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to close the generator; never blocks on the worker."""
        with self.lock:
            if self.stopped or self.finished:
                self.stopped = True
                if self.unstarted:
                    self.release()  # it held the slot for a second attempt
                return
            self.stopped = True
            self.items.clear()
        self.worker.send(protocol.STOP, self.number)
        if self.kill_after is not None:
            timers.schedule(self.kill_after, self._kill_if_running)

    def _kill_if_running(self) -> None:
        if self.finished:
            return
        logger.warning(
            "model %r: worker %d was still inside the model %gs after its stream was stopped; "
            "killing it (LLM_ASYNC_KILL_AFTER)",
            self.model_id,
            self.worker.pid,
            self.kill_after,
        )
        self.worker.kill()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ProcessStream:
    """The consumer's handle on one prompt running in a worker."""

    def __init__(self, job: _Job, request: StreamRequest, payload: dict[str, Any]) -> None:
        self._job = job
        self._request = request
        self._payload = payload
        self._redispatches = 0
        config = request.config
        self._deadlines = Deadlines.from_settings(config)
        self._timed = config.timeout is not None
        self._started_at = request.started_at
        self._received_batches = 0
        self._owed = 0
        self._credit_group = max(1, (config.buffer + 1) // 2)
        self._finalizer = weakref.finalize(self, job.stop)

    @property
    def worker_pid(self) -> int:
        return self._job.worker.pid

    def stop(self) -> None:
        self._finalizer()

    async def next_batch(self) -> list[Any]:
        while True:
            job = self._job  # replaced when the prompt is sent to another worker
            if self._timed:  # the whole-response limit holds for buffered chunks too
                overdue = self._deadlines.nearest(
                    job.model_id, "handover", started_at=self._started_at
                )
                if overdue is not None and overdue.remaining <= 0:
                    raise overdue.error
            batch: list[Any] = []
            with job.lock:
                returned, job.in_hand = job.in_hand, 0
                if job.items:
                    batch = list(job.items)
                    job.items.clear()
                    job.in_hand = len(batch)
                    self._received_batches += 1
                elif job.unstarted and not job.stopped and self._redispatches < 2:
                    pass  # its worker died before the prompt reached the model: go again
                elif job.finished or job.stopped:
                    if job.unstarted:
                        job.release()  # it held the slot for a second attempt
                    error = job.error
                    if error is not None:
                        raise error
                    raise StopAsyncIteration
                else:
                    loop = asyncio.get_running_loop()
                    waiter = loop.create_future()
                    job.waiter, job.waiter_loop = waiter, loop
            if returned:
                # Credits go back in groups of half the buffer: one send per group rather
                # than per chunk.  The worker still holds the other half, and a consumer
                # that keeps reading always completes a group, so nothing starves.
                self._owed += returned
                if self._owed >= self._credit_group:
                    job.worker.send(protocol.CREDIT, job.number, self._owed)
                    self._owed = 0
            if batch:
                return batch
            if job.unstarted and not job.stopped:
                await self._redispatch(job)
                continue
            await self._wait(waiter)

    async def _redispatch(self, dead: _Job) -> None:
        """Run the prompt on another worker: the one it was sent to died before starting it."""
        self._redispatches += 1
        logger.info(
            "model %r: worker %d died before it started the prompt; sending it to another",
            dead.model_id,
            dead.worker.pid,
        )
        try:
            job = await _dispatch(self._request, self._payload, dead.release)
        except BaseException:
            dead.release()
            raise
        self._finalizer.detach()
        self._owed = 0  # the new worker starts with a full set of credits
        self._job = job
        self._finalizer = weakref.finalize(self, job.stop)

    async def _wait(self, waiter: asyncio.Future[None]) -> None:
        job = self._job
        phase: Phase = "later" if self._received_batches else "first"
        limit = self._deadlines.nearest(
            job.model_id, phase, started_at=self._started_at, worker_started_at=job.sent_at
        )
        try:
            await wait_within(waiter, limit)
        except BaseException:
            with job.lock:
                if job.waiter is waiter:
                    job.waiter = job.waiter_loop = None
            raise


async def serve(request: StreamRequest) -> ProcessStream:
    """Start ``request`` in a worker of its model once a model slot is free."""
    config = request.config
    slots = limits.model_limiter(model_key(request.sync_model), config.model_concurrency)
    await _within_limits(slots.acquire(config.model_concurrency), request, "queue")
    released = threading.Event()
    release_lock = threading.Lock()

    def release() -> None:
        """Free the slot once, whichever thread (reader, loop) gets here first."""
        with release_lock:
            if released.is_set():
                return
            released.set()
        slots.release()

    try:
        payload = _encode(request)
        job = await _dispatch(request, payload, release)
    except BaseException:
        release()
        raise
    return ProcessStream(job, request, payload)


async def _dispatch(
    request: StreamRequest, payload: dict[str, Any], release: Callable[[], None]
) -> _Job:
    """Hand the encoded prompt to an idle worker of its model, or to a new one."""
    config = request.config
    pool = pool_for(model_key(request.sync_model))
    while True:
        worker = pool.checkout()
        if worker is None:
            worker = pool.new_worker(request.model_id)
            ready = asyncio.wrap_future(worker.start())
            try:
                await _within_limits(asyncio.shield(ready), request, "start")
            except asyncio.CancelledError:
                _keep_when_ready(worker, pool, config.worker_idle_timeout)
                raise
            except BaseException:
                if not worker.ready.done() or worker.ready.exception() is not None:
                    pool.discard(worker)
                raise
        job = _Job(request, worker, release)
        idle_timeout = config.worker_idle_timeout
        worker.on_job_end = lambda w, after=idle_timeout: pool.checkin(w, after)
        job.sent_at = time.monotonic()
        number = worker.begin(job, payload)
        if number is None:
            continue  # it died while idle: take another
        job.number = number
        return job


def _keep_when_ready(worker: WorkerProcess, pool: Any, idle_timeout: float | None) -> None:
    """A worker whose starter gave up joins the pool when ready (it is warm for the next)."""

    def done(future: Any) -> None:
        if future.exception() is None:
            pool.checkin(worker, idle_timeout)

    worker.ready.add_done_callback(done)


def _encode(request: StreamRequest) -> dict[str, Any]:
    sync_model = request.sync_model
    model_key_value = getattr(sync_model, "key", None)
    return {
        "prompt": wire.encode_prompt(request.prompt),
        "conversation": wire.encode_conversation(request.conversation),
        "stream": request.stream,
        "key": request.key,
        "passes_key": request.passes_key,
        "model_key": model_key_value if isinstance(model_key_value, str) else None,
        "credits": request.config.buffer,
        "stall_timeout": request.config.stall_timeout,
    }


async def _within_limits(awaitable: Any, request: StreamRequest, phase: Phase) -> None:
    """Await ``awaitable`` within the limits of ``phase`` (:meth:`Deadlines.nearest`)."""
    deadlines = Deadlines.from_settings(request.config)
    limit = deadlines.nearest(request.model_id, phase, started_at=request.started_at)
    await wait_within(awaitable, limit)
