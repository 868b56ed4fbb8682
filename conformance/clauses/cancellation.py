"""Cancellation clauses: every way of stopping releases the caller and closes the generator."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from .. import features
from ..context import Context, quiet_loop
from ..instrument import Plan, Record
from ..marks import clause
from ..waiting import MODEL_BOUND, LoopThread, async_wait_until, wait_event

RELEASE_LIMIT = 1.0  # seconds the caller may wait after a stop (the worker stays paused)
BOUND = 10.0
PAD = 6


@dataclass
class Stop:
    """What a stop scenario observed on the consumer side."""

    released_after: float | None  # seconds from the stop to the caller's release
    paused_at_release: bool  # the worker was still paused (so the release did not wait for it)
    note: str = ""


async def _first_chunk(response: Any, ctx: Context) -> tuple[Any, Record]:
    iterator = response.__aiter__()
    try:
        await asyncio.wait_for(iterator.__anext__(), MODEL_BOUND)
    except asyncio.TimeoutError:
        pytest.fail(f"no first chunk within {MODEL_BOUND:g}s; cannot test stopping", pytrace=False)
    except Exception as error:
        pytest.fail(f"the stream failed before it could be stopped: {error!r}", pytrace=False)
    record = ctx.records(1)[0]
    if not await wait_event(record.gate_reached, BOUND):
        pytest.fail("the sync generator never asked for its second chunk", pytrace=False)
    return iterator, record


def close_problem(error: BaseException) -> str:
    """What the model's own generator did when it was closed, naming the real exception."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, RuntimeError) and "ignored GeneratorExit" in str(error):
        return (
            f"the model's generator did not close cleanly: {text} (it catches GeneratorExit "
            "and keeps yielding)"
        )
    return (
        f"the model's generator did not close cleanly: its clean-up raised {text} when closed "
        "(a finally or except GeneratorExit block that fails)"
    )


def _check_closed(
    ctx: Context,
    record: Record,
    stop: Stop,
    how: str,
    limit: float = RELEASE_LIMIT,
    released: str = "caller released",
) -> None:
    """The common verdict: prompt release, then a clean close on the worker after <= 1 chunk."""
    problems = []
    if stop.released_after is None:
        problems.append(f"{how} did not release the caller within {BOUND:g}s")
    elif stop.released_after > limit:
        problems.append(f"{how} released the caller only after {stop.released_after:.2f}s")
    elif not stop.paused_at_release:
        problems.append(f"{how} released the caller only after the worker had finished")
    if not record.done.wait(BOUND):
        problems.append(
            f"the sync generator was still running {BOUND:g}s after the stop "
            f"({record.pulled_after_stop} chunk(s) pulled since)"
        )
    else:
        if record.ended_by != "close":
            problems.append(
                f"the sync generator was never closed: it {record.describe_end()} after "
                f"{record.pulled_after_stop} more chunk(s)"
            )
        elif record.pulled_after_stop > 1:
            problems.append(
                f"{record.pulled_after_stop} chunks were pulled after the stop (at most 1)"
            )
        if record.end_thread != record.thread:
            problems.append(
                f"the generator was closed on thread {record.end_thread!r}, not on its worker "
                f"thread {record.thread!r}"
            )
        if record.end_thread == threading.main_thread().name:
            problems.append("the generator ran or was closed on the event loop's thread")
        if record.real_close_error is not None:
            problems.append(close_problem(record.real_close_error))
        if ctx.is_twin(ctx.twin()) and record.cancelled_after_gate is False:
            problems.append("llm_all_models_async.cancelled() was False after the stop")
    assert not problems, f"{how}: " + "; ".join(problems)
    ctx.note(
        f"{released} in {stop.released_after * 1000:.1f} ms; generator closed on "
        f"{record.end_thread} after {record.pulled_after_stop} more chunk(s){stop.note}"
        + (
            f" ({record.padded} chunk(s) padded by the instrumentation: the model's own "
            "stream was shorter)"
            if record.padded
            else ""
        )
    )


def _scenario(
    ctx: Context,
    how: str,
    stopper: Callable[[Any, Plan], Awaitable[tuple[Stop, Record]]],
    limit: float = RELEASE_LIMIT,
    released: str = "caller released",
) -> None:
    plan = ctx.use(Plan(gate_after=1, pad_to=PAD))
    twin = ctx.twin()

    async def main() -> tuple[Stop, Record]:
        try:
            return await stopper(twin, plan)
        finally:
            plan.gate.set()

    stop, record = ctx.loop(main)
    _check_closed(ctx, record, stop, how, limit, released)


class CancellationClauses:
    """cancellation.*: task.cancel, wait_for, aclose, a dropped response, loop shutdown."""

    @clause("cancellation.task_cancel")
    def test_cancellation_task_cancel(self, llm_conformance: Context) -> None:
        ctx = llm_conformance

        async def stopper(twin: Any, plan: Plan) -> tuple[Stop, Record]:
            response = twin.prompt(ctx.samples.prompt, **ctx.prompt_kwargs())
            started = asyncio.Event()
            holder: dict[str, Record] = {}

            async def consume() -> None:
                iterator, holder["record"] = await _first_chunk(response, ctx)
                started.set()
                async for _ in iterator:
                    pass

            task = asyncio.create_task(consume())
            await asyncio.wait(
                {task, asyncio.ensure_future(started.wait())},
                timeout=MODEL_BOUND + BOUND,  # _first_chunk gives the model MODEL_BOUND
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not started.is_set():
                task.cancel()
                failure = None if not task.done() or task.cancelled() else task.exception()
                pytest.fail(f"the stream never started: {failure!r}", pytrace=False)
            record = holder["record"]
            record.mark_stop()
            stopped_at = time.monotonic()
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=BOUND)
            released = time.monotonic() - stopped_at if done else None
            stop = Stop(released, not record.done.is_set())
            record.mark_stop()
            plan.gate.set()
            await async_wait_until(record.done.is_set, BOUND)
            return stop, record

        _scenario(ctx, "task.cancel()", stopper)

    @clause("cancellation.at_yield")
    def test_cancellation_at_yield(self, llm_conformance: Context) -> None:
        """The other state a stop can find: the model suspended at a ``yield``, the worker
        waiting for buffer room, nobody inside ``next()``.  An adapter that closes the
        generator itself when it is not running would close it on the event loop's thread."""
        ctx = llm_conformance
        for name in ("LLM_ASYNC_STALL_TIMEOUT", "LLM_ASYNC_IDLE_TIMEOUT", "LLM_ASYNC_TIMEOUT"):
            ctx.monkeypatch.delenv(name, raising=False)
        ctx.monkeypatch.setenv("LLM_ASYNC_BUFFER", "1")
        plan = ctx.use(Plan(pad_to=PAD))
        twin = ctx.twin()

        async def main() -> tuple[Stop, Record]:
            response = twin.prompt(ctx.samples.prompt, **ctx.prompt_kwargs())
            got_one = asyncio.Event()
            never = asyncio.Event()

            async def consume(stream: Any) -> None:
                async for _ in stream:
                    got_one.set()
                    await never.wait()  # stops reading: the buffer fills, the worker waits

            task = asyncio.create_task(consume(response))
            try:
                await asyncio.wait_for(got_one.wait(), MODEL_BOUND)
            except asyncio.TimeoutError:
                task.cancel()
                pytest.fail(f"no first chunk within {MODEL_BOUND:g}s; cannot test stopping")
            record = ctx.records(1)[0]
            await async_wait_until(lambda: record.at_yield or record.done.is_set(), BOUND)
            if not record.at_yield:
                task.cancel()
                plan.release()
                pytest.fail(
                    "the consumer stopped reading after one chunk (LLM_ASYNC_BUFFER=1), yet the "
                    f"generator {record.describe_end() if record.done.is_set() else 'kept running'}"
                    ": the worker does not wait for buffer room, so no stream was left paused "
                    "at a yield to stop (see worker.buffer)",
                    pytrace=False,
                )
            gone = weakref.ref(response)
            record.mark_stop()
            stopped_at = time.monotonic()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            del task, response  # the cancelled task's traceback holds the consumer's frame
            collected = await async_wait_until(lambda: gc.collect() >= 0 and gone() is None, BOUND)
            for _ in range(5):  # let the loop run the async generator's aclose()
                await asyncio.sleep(0)
            # Not a release measurement: the consumer was not waiting on the stream.
            stop = Stop(time.monotonic() - stopped_at if collected else None, True)
            plan.release()
            await async_wait_until(record.done.is_set, BOUND)
            return stop, record

        stop, record = ctx.loop(main)
        _check_closed(
            ctx,
            record,
            stop,
            "cancelling a consumer that stopped reading",
            BOUND,
            "response collected",
        )

    @clause("cancellation.wait_for")
    def test_cancellation_wait_for(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        limit = 0.3

        async def stopper(twin: Any, plan: Plan) -> tuple[Stop, Record]:
            response = twin.prompt(ctx.samples.prompt, **ctx.prompt_kwargs())
            iterator, record = await _first_chunk(response, ctx)

            async def rest() -> None:
                async for _ in iterator:
                    pass

            started = time.monotonic()
            try:
                await asyncio.wait_for(asyncio.wait_for(rest(), limit), BOUND)
                timed_out = False
            except asyncio.TimeoutError:
                timed_out = True
            released = time.monotonic() - started - limit
            if not timed_out or released > BOUND - 1:
                pytest.fail("wait_for did not time out while the worker was paused")
            stop = Stop(max(released, 0.0), not record.done.is_set())
            record.mark_stop()
            plan.gate.set()
            await async_wait_until(record.done.is_set, BOUND)
            return stop, record

        _scenario(ctx, f"asyncio.wait_for(timeout={limit})", stopper)

    @clause("cancellation.aclose")
    def test_cancellation_aclose(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        if not features.has_astream_events():
            pytest.skip(features.missing("AsyncResponse.astream_events()", "0.36"))
        if not features.astream_events_closes_early_exit():
            pytest.skip(
                f"llm {features.llm_version()}'s astream_events() does not close the model's "
                "generator when the consumer leaves early (llm 0.36 does), so no twin can see "
                "that exit; a dropped response or LLM_ASYNC_STALL_TIMEOUT still closes it; "
                "upgrade to llm>=0.36 to run it"
            )

        async def stopper(twin: Any, plan: Plan) -> tuple[Stop, Record]:
            response = twin.prompt(ctx.samples.prompt, **ctx.prompt_kwargs())
            events = response.astream_events()
            await asyncio.wait_for(events.__anext__(), MODEL_BOUND)  # the model's first chunk
            record = ctx.records(1)[0]
            await wait_event(record.gate_reached, BOUND)
            record.mark_stop()
            stopped_at = time.monotonic()
            try:
                await asyncio.wait_for(events.aclose(), BOUND)
                released: float | None = time.monotonic() - stopped_at
            except asyncio.TimeoutError:
                released = None
            stop = Stop(released, not record.done.is_set())
            plan.gate.set()
            await async_wait_until(record.done.is_set, BOUND)
            return stop, record

        _scenario(ctx, "leaving astream_events() early (aclose)", stopper)

    @clause("cancellation.abandoned")
    def test_cancellation_abandoned(self, llm_conformance: Context) -> None:
        ctx = llm_conformance

        async def stopper(twin: Any, plan: Plan) -> tuple[Stop, Record]:
            response = twin.prompt(ctx.samples.prompt, **ctx.prompt_kwargs())
            iterator, record = await _first_chunk(response, ctx)
            gone = weakref.ref(response)
            del iterator, response
            record.mark_stop()
            stopped_at = time.monotonic()
            collected = False
            deadline = stopped_at + BOUND
            while time.monotonic() < deadline:
                gc.collect()
                if gone() is None:
                    collected = True
                    break
                await asyncio.sleep(0.005)
            # Let finalizers scheduled on this loop (async generator aclose) run.
            for _ in range(5):
                await asyncio.sleep(0)
            stop = Stop(
                time.monotonic() - stopped_at if collected else None, not record.done.is_set()
            )
            if not collected:
                stop.note = "; the response was never collected"
            plan.gate.set()
            await async_wait_until(record.done.is_set, BOUND)
            if not collected:
                pytest.fail(
                    "the dropped response was never garbage collected: something (the worker "
                    "thread, a queue, a callback) still references it, so its generator can "
                    "never be closed"
                )
            return stop, record

        # Collection takes a full gc pass, slow in big processes: bounded, not timed.
        _scenario(ctx, "dropping the response", stopper, BOUND, "response collected")

    @clause("cancellation.loop_shutdown")
    def test_cancellation_loop_shutdown(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        plan = ctx.use(Plan(gate_after=1, pad_to=PAD))
        twin = ctx.twin()
        left: dict[str, float] = {}

        async def main() -> None:
            quiet_loop(ctx.bench.loop_errors)
            response = twin.prompt(ctx.samples.prompt, **ctx.prompt_kwargs())
            started = asyncio.Event()

            async def consume() -> None:
                await _first_chunk(response, ctx)
                started.set()
                async for _ in response:
                    pass

            task = asyncio.get_running_loop().create_task(consume())
            await asyncio.wait(
                {task, asyncio.ensure_future(started.wait())},
                timeout=MODEL_BOUND + BOUND,  # _first_chunk gives the model MODEL_BOUND
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not started.is_set():
                pytest.fail("the stream never started", pytrace=False)
            ctx.records(1)[0].mark_stop()
            left["at"] = time.monotonic()
            # Returning with the task still streaming: asyncio.run cancels it and shuts down.

        runner = LoopThread(main).start()
        try:
            returned = runner.returned.wait(BOUND * 3)
            released = time.monotonic() - left["at"] if returned and "at" in left else None
            record = ctx.records(1)[0]
            stop = Stop(released, not record.done.is_set())
        finally:
            plan.gate.set()
        if runner.error is not None and not isinstance(runner.error, asyncio.CancelledError):
            pytest.fail(f"asyncio.run raised {type(runner.error).__name__}: {runner.error}")
        _check_closed(ctx, record, stop, "shutting the event loop down")
