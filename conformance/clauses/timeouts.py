"""Timeout clauses: each adapter limit fires a TimeoutError subclass and leaves no thread behind."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from .. import adapter
from ..context import Context
from ..instrument import Plan, Record
from ..marks import clause
from ..waiting import MODEL_BOUND, async_wait_until, wait_until

LIMIT = "0.3"
BOUND = 5.0


class NoTimeout(Exception):
    """The outer bound of the test expired before any adapter timeout fired."""


def _only(ctx: Context, settings: dict[str, str]) -> None:
    for name in adapter.TIMEOUT_SETTINGS:
        ctx.monkeypatch.delenv(name, raising=False)
    for name, value in settings.items():
        ctx.monkeypatch.setenv(name, value)


async def _consume(response: Any) -> list[Any]:
    chunks = []
    async for chunk in response:
        chunks.append(chunk)
    return chunks


async def _expect_error(response: Any, *, after_first_chunk: bool = False) -> BaseException | None:
    """The error consuming ``response`` ends with (None: it completed).

    ``after_first_chunk``: the limit runs from the first chunk (the idle timeout), so the
    adapter gets :data:`BOUND` from there; the model may take up to :data:`MODEL_BOUND` to
    produce that chunk.
    """
    first_chunk = asyncio.Event()

    async def consume() -> None:
        async for _chunk in response:
            first_chunk.set()

    task = asyncio.ensure_future(consume())
    bound = BOUND
    try:
        if after_first_chunk:
            arrived = asyncio.ensure_future(first_chunk.wait())
            await asyncio.wait({task, arrived}, timeout=MODEL_BOUND, return_when="FIRST_COMPLETED")
            arrived.cancel()
            if not first_chunk.is_set() and not task.done():
                bound = 0.0  # no first chunk within MODEL_BOUND: report it below
        await asyncio.wait_for(task, bound)
    except asyncio.TimeoutError as error:
        if getattr(error, "setting", None) is None:
            if not after_first_chunk or first_chunk.is_set():
                return NoTimeout(f"no adapter timeout within {BOUND:g}s")
            return NoTimeout(f"the model produced no first chunk within {MODEL_BOUND:g}s")
        return error
    except Exception as error:
        return error
    return None


def _end_bound(ctx: Context) -> float:
    """How long a stopped execute() may take to end.

    In a worker process a model still inside its own work when the stop comes (a plugin that
    loads its weights before the first chunk, as llm-gpt4all does) may keep it for
    ``LLM_ASYNC_KILL_AFTER`` seconds before the adapter kills the worker, as its contract says.
    """
    if ctx.bench.isolation != "process":
        return BOUND
    return BOUND + (adapter.kill_after(ctx.model_id) or 0.0)


def _killed(ctx: Context, setting: str, records: list[Record]) -> None:
    """Judge the records whose worker process died before the generator ended.

    A kill of a worker whose model is inside its own work is the contract keeping its word.
    A kill of one whose generator was suspended at a ``yield`` is not: the stop could have
    closed it there at once, so the worker ignored the stop.
    """
    lost = [r for r in records if r.ended_by == "lost"]
    at_yield = [r for r in lost if r.at_yield]
    assert not at_yield, (
        f"{setting} fired and the stream was stopped, but worker pid(s) "
        f"{', '.join(str(r.pid) for r in at_yield)} never closed the generator although it was "
        "suspended at a yield, where a stop closes it at once: the worker ended without "
        "closing it (killed after LLM_ASYNC_KILL_AFTER, or died)"
    )
    for record in lost:
        ctx.note(
            f"worker pid {record.pid} ended while the model was inside its own work, "
            f"{len(record.chunks)} chunk(s) in, after the stop (LLM_ASYNC_KILL_AFTER="
            f"{adapter.kill_after(ctx.model_id)})"
        )


def _verdict(
    ctx: Context, setting: str, error: BaseException | None, plan: Plan, threads_before: set[int]
) -> None:
    plan.release()
    records = list(ctx.instrument.records)
    bound = _end_bound(ctx)
    for record in records:
        record.done.wait(bound)
    left = []
    if not wait_until(lambda: not _new_workers(ctx, threads_before), BOUND):
        left = _new_workers(ctx, threads_before)
    problem = adapter.timeout_error_problem(
        None if isinstance(error, NoTimeout) else error, setting, ctx.model_id
    )
    if isinstance(error, NoTimeout):
        problem = f"{error} although {setting}={LIMIT}"
    assert problem is None, f"{setting}: {problem}"
    assert not left, f"{setting} fired but left worker thread(s) running: {left}"
    still = [r for r in records if not r.done.is_set()]
    assert not still, (
        f"{setting} fired but the sync generator kept running {bound:g}s after the stop"
    )
    _killed(ctx, setting, records)
    ctx.note(f"{type(error).__name__}: {error}")


def _new_workers(ctx: Context, before: set[int]) -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if adapter.is_worker_thread_name(t.name) and t.ident not in before
    ]


def _workers_now() -> set[int]:
    return {t.ident or 0 for t in threading.enumerate() if adapter.is_worker_thread_name(t.name)}


def _warm_up(ctx: Context) -> None:
    """One quick prompt first, so long-lived workers (affinity=model) exist before counting."""
    ctx.use(Plan(synthetic=("warm",)))
    ctx.twin_run()
    ctx.instrument.wait_for_idle(BOUND)


def _single(ctx: Context, setting: str, plan: Plan, *, after_first_chunk: bool = False) -> None:
    _warm_up(ctx)
    _only(ctx, {setting: LIMIT})
    ctx.use(plan)
    before = _workers_now()
    twin = ctx.twin()

    async def main() -> BaseException | None:
        response = twin.prompt(ctx.samples.prompt, **ctx.prompt_kwargs())
        try:
            return await _expect_error(response, after_first_chunk=after_first_chunk)
        finally:
            plan.release()

    _verdict(ctx, setting, ctx.loop(main), plan, before)


class TimeoutClauses:
    """timeouts.*: LLM_ASYNC_TIMEOUT, _FIRST_CHUNK_, _IDLE_, _QUEUE_ and _STALL_TIMEOUT."""

    @clause("timeouts.response")
    def test_timeouts_response(self, llm_conformance: Context) -> None:
        _single(llm_conformance, "LLM_ASYNC_TIMEOUT", Plan(gate_after=1, pad_to=3))

    @clause("timeouts.first_chunk")
    def test_timeouts_first_chunk(self, llm_conformance: Context) -> None:
        _single(
            llm_conformance, "LLM_ASYNC_FIRST_CHUNK_TIMEOUT", Plan(hold_first=threading.Event())
        )

    @clause("timeouts.idle")
    def test_timeouts_idle(self, llm_conformance: Context) -> None:
        _single(
            llm_conformance,
            "LLM_ASYNC_IDLE_TIMEOUT",
            Plan(gate_after=1, pad_to=3),
            after_first_chunk=True,
        )

    @clause("timeouts.queue")
    def test_timeouts_queue(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        setting = "LLM_ASYNC_QUEUE_TIMEOUT"
        _only(ctx, {setting: LIMIT})
        ctx.monkeypatch.setenv("LLM_ASYNC_MODEL_CONCURRENCY", "1")
        _warm_up(ctx)
        plan = ctx.use(Plan(gate_after=1, pad_to=2))
        before = _workers_now()
        twin = ctx.twin()

        async def main() -> tuple[BaseException | None, Any]:
            first = asyncio.create_task(
                _consume(twin.prompt(ctx.samples.prompt, **ctx.prompt_kwargs()))
            )
            try:
                if not await async_wait_until(lambda: bool(ctx.instrument.records), BOUND):
                    return NoTimeout("the first prompt never started"), None
                error = await _expect_error(twin.prompt(ctx.samples.prompt, **ctx.prompt_kwargs()))
            finally:
                plan.release()
            try:  # the rest of its reply is the model's own work
                finished: Any = await asyncio.wait_for(first, MODEL_BOUND)
            except Exception as failure:
                finished = failure
            return error, finished

        error, first_result = ctx.loop(main)
        assert not isinstance(first_result, BaseException), (
            f"the prompt holding the model failed: {type(first_result).__name__}: {first_result}"
        )
        assert len(ctx.instrument.records) == 1, (
            "the queued prompt reached execute() although model_concurrency=1 was busy"
        )
        _verdict(ctx, setting, error, plan, before)

    @clause("timeouts.stall")
    def test_timeouts_stall(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        setting = "LLM_ASYNC_STALL_TIMEOUT"
        _only(ctx, {setting: LIMIT})
        ctx.monkeypatch.setenv("LLM_ASYNC_BUFFER", "1")
        _warm_up(ctx)
        plan = ctx.use(Plan(pad_to=6))
        before = _workers_now()
        twin = ctx.twin()

        async def main() -> BaseException | None:
            response = twin.prompt(ctx.samples.prompt, **ctx.prompt_kwargs())
            iterator = response.__aiter__()
            try:  # the model's own time to its first chunk; the stall is judged after it
                await asyncio.wait_for(iterator.__anext__(), MODEL_BOUND)
            except asyncio.TimeoutError:
                return NoTimeout(f"the model produced no first chunk within {MODEL_BOUND:g}s")
            record = ctx.records(1)[0]
            # Stop reading: the worker fills the buffer, then must give up and close.
            if not await async_wait_until(record.done.is_set, BOUND):
                return NoTimeout(f"the worker was still waiting {BOUND:g}s after the stall")
            return await _expect_error(iterator)

        error = ctx.loop(main)
        record = ctx.records(1)[0]
        _verdict(ctx, setting, error, plan, before)
        assert record.ended_by == "close" and record.end_thread == record.thread, (
            f"after the stall the generator {record.describe_end()}, expected a close on its "
            "worker thread"
        )
