"""Serve a prompt in a warm worker process: the ``process`` path of :mod:`..serving`.

Contract (on top of the seam's).  The worker's reader thread hands chunks to the consumer
through a :class:`~..channel.Channel`, as the thread path's worker does, so order, batches,
the deadlines of every wait and a stop that never blocks are the channel's.

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
* Every timeout is the thread path's (:meth:`~..deadlines.Deadlines.nearest`); the first-chunk
  clock starts when the prompt is sent to a worker, after the queue and the worker's start.
* ``execute_tool_call`` from the worker runs on the parent's response view (the event loop)
  in a helper thread, so the channel keeps being read while the tool runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import limits
from ..channel import Channel, ChannelStream
from ..deadlines import Deadlines, Phase, wait_within
from ..errors import StallTimeoutError, WorkerCrashedError
from ..identity import model_key
from ..serving import StreamRequest
from . import protocol, timers, wire
from .handle import WorkerProcess
from .pool import pool_for

logger = logging.getLogger("llm_all_models_async")


class _Job:
    """One prompt in one worker: the reader thread's side of the prompt's :class:`Channel`.

    It references neither the consumer handle nor the async response (only the weak view),
    so an abandoned response can be collected, which stops the channel and with it the job.
    """

    def __init__(self, request: StreamRequest, worker: WorkerProcess, release: Callable[[], None]):
        self.model_id = request.model_id
        self.view = request.response
        self.kill_after = request.config.kill_after
        self.worker = worker
        self.number = 0
        # Read-ahead is bounded by the worker's credits, so the reader offers and never waits.
        self.channel = Channel(request.model_id, request.config.buffer, stall_timeout=None)
        self.channel.on_stop(self._send_stop)
        self.started = False  # the worker has begun this prompt (it may have run the model)
        self.unstarted = False  # the worker died before beginning it: safe to send again
        self.worker_stall_timeout = request.config.stall_timeout
        self.release = release  # idempotent: frees the model's slot

    # -- reader thread -------------------------------------------------------------------

    def on_chunk(self, chunk: Any) -> None:
        self.channel.offer(chunk)

    def on_op(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            if name == "setattr":
                setattr(self.view, args[0], args[1])
            elif name in ("set_usage", "add_tool_call", "set_resolved_model"):
                getattr(self.view, name)(*args, **kwargs)
        except Exception as error:  # the response was dropped: nobody wants the result
            logger.debug("model %r: response write %s not applied: %r", self.model_id, name, error)

    def on_tool_call(self, number: int, tool_call: Any) -> None:
        # The reply carries the number of the frame that asked, not ``self.number``: a fast
        # worker's call can arrive before _dispatch has recorded the number begin() returned,
        # and a reply numbered 0 would be dropped, leaving the worker waiting for ever.
        worker, view = self.worker, self.view

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
        if self.channel.stopped:
            logger.info("model %r: %s", self.model_id, error)
        elif not self.started:
            # The prompt never reached the model: the consumer sends it to another worker,
            # still holding the model's slot (its stream releases it if it cannot).
            self.unstarted = True
            self.channel.finish(error)
            return
        self._finish(error)

    def _finish(self, error: BaseException | None) -> None:
        self.channel.finish(None if self.channel.stopped else error)
        self.release()

    # -- consumer side (through the channel's stop) ----------------------------------------

    def _send_stop(self) -> None:
        """The channel was stopped while the prompt runs: close the generator in the worker."""
        self.worker.send(protocol.STOP, self.number)
        if self.kill_after is not None:
            timers.schedule(self.kill_after, self._kill_if_running)

    def _kill_if_running(self) -> None:
        if self.channel.finished:
            return
        logger.warning(
            "model %r: worker %d was still inside the model %gs after its stream was stopped; "
            "killing it (LLM_ASYNC_KILL_AFTER)",
            self.model_id,
            self.worker.pid,
            self.kill_after,
        )
        self.worker.kill()


class ProcessStream(ChannelStream):
    """The consumer's handle on one prompt running in a worker.

    On top of the channel's reading it returns credit to the worker (in groups of half the
    buffer: one send per group rather than per chunk; the worker still holds the other half,
    and a consumer that keeps reading always completes a group, so nothing starves), and
    sends the prompt to another worker when the one it went to died before starting it.
    """

    def __init__(self, job: _Job, request: StreamRequest, payload: dict[str, Any]) -> None:
        self._job = job
        super().__init__(job.channel, Deadlines.from_settings(request.config), request.started_at)
        self._request = request
        self._payload = payload
        self._redispatches = 0
        self._credited = 0
        self._credit_group = max(1, (request.config.buffer + 1) // 2)

    def __del__(self) -> None:
        # Dropped without stop() (an abandoned response): stop, as the thread path does.
        self.stop()

    @property
    def worker_pid(self) -> int:
        return self._job.worker.pid

    def stop(self) -> None:
        """Stop the prompt; returns at once (the worker gets ``STOP``, see the contract)."""
        job = self._job
        job.channel.stop()
        if job.unstarted:
            job.release()  # it held the slot for a second attempt

    def _took(self) -> None:
        job = self._job
        owed = job.channel.consumed - self._credited
        if owed >= self._credit_group:
            job.worker.send(protocol.CREDIT, job.number, owed)
            self._credited += owed

    async def next_batch(self) -> list[Any]:
        while True:
            job = self._job  # replaced when the prompt is sent to another worker
            try:
                return await super().next_batch()
            except WorkerCrashedError:
                if not job.unstarted or job.channel.stopped:
                    raise
                if self._redispatches >= 2:
                    job.release()  # it held the slot for a second attempt
                    raise
            await self._redispatch(job)

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
        self._credited = 0  # the new worker starts with a full set of credits
        self._job = job
        self._channel = job.channel


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
        job.channel.worker_started_at = time.monotonic()  # the first-chunk clock starts
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
