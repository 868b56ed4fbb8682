"""Worker clauses: the adapter's promises about where and when execute() runs.

Each drives the adapter with the instrumentation's synthetic chunks (the model's own code is
not needed to check them) and observes the promise directly: the context execute() sees, the
order waiting prompts start in, how far the worker reads ahead, how soon a slot comes back.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from .. import adapter
from ..context import Context
from ..instrument import CALLER_VALUE, Plan
from ..marks import clause
from ..waiting import async_wait_until

BOUND = 10.0
SLOT_BOUND = 5.0  # a freed slot admits the next prompt at once; this is only the outer bound
SETTLE_TICKS = 50  # loop turns for a new prompt to reach the adapter's queue
BUFFER = 4
BUFFER_CHUNKS = 12
VIOLATION_WINDOW = 0.3  # bounded wait for a worker reading further ahead than allowed
WAITING = 3


class InjectedSlotError(Exception):
    """Raised inside execute() to check that the model's slot is released."""


def _serial(ctx: Context) -> None:
    """One prompt at a time, no adapter timeouts: the clause's own bounds apply."""
    for name in adapter.TIMEOUT_SETTINGS:
        ctx.monkeypatch.delenv(name, raising=False)
    ctx.monkeypatch.setenv("LLM_ASYNC_MODEL_CONCURRENCY", "1")


async def _consume(response: Any) -> list[Any]:
    return [chunk async for chunk in response]


class WorkerClauses:
    """worker.*: contextvars, first come first served, the read-ahead buffer, slot release."""

    @clause("worker.contextvars")
    def test_worker_contextvars(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        if ctx.bench.isolation == "process":
            pytest.skip(
                "with isolation process execute() runs in a worker process, which context "
                "variables do not reach (by design); run with --llm-isolation thread to check it"
            )
        ctx.use(Plan(synthetic=("ok ",)))
        twin = ctx.twin()
        value = f"caller-{uuid.uuid4().hex[:8]}"

        async def main() -> Any:
            CALLER_VALUE.set(value)
            return await ctx.async_run(model=twin)

        result = ctx.loop(main)
        assert result.error is None, (
            f"the prompt failed: {type(result.error).__name__}: {result.error}"
        )
        seen = ctx.records(1)[0].caller_value
        assert seen == value, (
            f"execute() saw the context variable {CALLER_VALUE.name} = {seen!r}, the caller had "
            f"set {value!r}: the worker does not run the generator in a copy of the caller's "
            "contextvars context, so request-scoped values (tracing ids, settings) are lost"
        )
        ctx.note("execute() saw the caller's context variables")

    @clause("worker.fifo")
    def test_worker_fifo(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        _serial(ctx)
        plan = ctx.use(Plan(synthetic=("a ", "b "), gate_after=1))
        twin = ctx.twin()
        prompts = [f"{ctx.samples.prompt} [{index}]" for index in range(WAITING + 1)]
        kwargs = ctx.prompt_kwargs()

        async def main() -> tuple[int, list[Any]]:
            tasks = [asyncio.ensure_future(_consume(twin.prompt(prompts[0], **kwargs)))]
            try:
                holding = await async_wait_until(
                    lambda: (
                        bool(ctx.instrument.records)
                        and ctx.instrument.records[0].gate_reached.is_set()
                    ),
                    BOUND,
                )
                if not holding:
                    pytest.fail(f"the first prompt never started within {BOUND:g}s")
                for prompt in prompts[1:]:
                    tasks.append(asyncio.ensure_future(_consume(twin.prompt(prompt, **kwargs))))
                    for _ in range(SETTLE_TICKS):  # let it reach the adapter's queue
                        await asyncio.sleep(0)
                started_while_held = len(ctx.instrument.records)
            finally:
                plan.gate.set()
            outcomes = await asyncio.wait_for(
                asyncio.gather(*tasks, return_exceptions=True), BOUND * 2
            )
            return started_while_held, outcomes

        started_while_held, outcomes = ctx.loop(main)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        assert not failed, f"{len(failed)} prompt(s) failed: {failed[0]!r}"
        assert started_while_held == 1, (
            f"{started_while_held} executes started while the first held the only slot "
            "(model_concurrency=1): prompts did not wait"
        )
        order = [prompts.index(record.args["prompt"].prompt) for record in ctx.records(WAITING + 1)]
        assert order == list(range(WAITING + 1)), (
            f"prompts queued as 1, 2, 3 behind a busy model started in the order "
            f"{order[1:]}: waiting prompts are not served first come, first served"
        )
        ctx.note(f"{WAITING} waiting prompts started in arrival order")

    @clause("worker.buffer")
    def test_worker_buffer(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        _serial(ctx)
        ctx.monkeypatch.setenv("LLM_ASYNC_BUFFER", str(BUFFER))
        chunks = tuple(f"c{index} " for index in range(BUFFER_CHUNKS))
        ctx.use(Plan(synthetic=chunks))
        twin = ctx.twin()

        async def main() -> tuple[int, bool, list[Any]]:
            response = twin.prompt(ctx.samples.prompt, **ctx.prompt_kwargs())
            iterator = response.__aiter__()
            first = await asyncio.wait_for(iterator.__anext__(), BOUND)
            record = ctx.records(1)[0]
            # The consumer holds one chunk and stops reading: the worker may fill the buffer.
            filled = await async_wait_until(
                lambda: len(record.chunks) - 1 >= BUFFER - 1 or record.done.is_set(), BOUND
            )
            await async_wait_until(lambda: len(record.chunks) - 1 > BUFFER, VIOLATION_WINDOW)
            ahead = len(record.chunks) - 1
            rest = [chunk async for chunk in iterator]
            return ahead, filled, [first, *rest]

        ahead, filled, received = ctx.loop(main)
        assert ahead <= BUFFER, (
            f"with LLM_ASYNC_BUFFER={BUFFER} the worker pulled {ahead} chunks beyond the one "
            "the consumer had taken: it does not wait for buffer room, so a stalled consumer "
            "lets the model run on and fill memory"
        )
        assert filled, (
            f"with LLM_ASYNC_BUFFER={BUFFER} the worker read only {ahead} chunk(s) ahead of a "
            "paused consumer: the setting is not used"
        )
        assert received == list(chunks), f"the consumer received {received!r}, not {chunks!r}"
        ctx.note(f"read {ahead} chunk(s) ahead of a paused consumer with LLM_ASYNC_BUFFER={BUFFER}")

    @clause("worker.slot_release")
    def test_worker_slot_release(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        _serial(ctx)
        twin = ctx.twin()
        for where, raise_after in (("before its first chunk", 0), ("after its first chunk", 1)):
            ctx.use(
                Plan(
                    raise_after=raise_after,
                    pad_to=raise_after + 1,
                    error=lambda: InjectedSlotError("conformance: slot release"),
                )
            )
            failed = ctx.loop(lambda: ctx.async_run(model=twin))
            assert isinstance(failed.error, InjectedSlotError), (
                f"execute() raised InjectedSlotError {where}; the consumer got {failed.error!r}"
            )
            ctx.use(Plan(synthetic=("next ",)))

            async def next_prompt() -> Any:
                return await asyncio.wait_for(ctx.async_run(model=twin), SLOT_BOUND)

            try:
                after = ctx.loop(next_prompt)
            except asyncio.TimeoutError:
                pytest.fail(
                    f"after the model raised {where}, the next prompt did not start within "
                    f"{SLOT_BOUND:g}s (model_concurrency=1): the model's slot was never "
                    "released",
                    pytrace=False,
                )
            assert after.error is None, (
                f"after the model raised {where}, the next prompt failed: "
                f"{type(after.error).__name__}: {after.error}"
            )
        ctx.note("the slot was free again after an exception before and after the first chunk")
