"""Hygiene clauses: after normal, cancelled and failed prompts no thread, fd or child remains."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from .. import resources
from ..context import Context
from ..instrument import Plan
from ..marks import clause
from ..resources import Snapshot
from ..waiting import MODEL_BOUND, wait_until

BOUND = 10.0


@dataclass
class Batch:
    before: Snapshot
    problems: list[str]


class InjectedHygieneError(Exception):
    """Raised mid-stream to exercise the failure path."""


def _run_batch(ctx: Context) -> Batch:
    """Warm up, snapshot, then run normal, cancelled and failing prompts through the twin."""
    ctx.use(Plan())
    ctx.sync_run()
    ctx.twin_run()  # warm-up: lazily loaded models may keep files open for good
    before = Snapshot.take()
    problems: list[str] = []
    for _ in range(2):
        ctx.use(Plan())
        result = ctx.twin_run()
        if result.error is not None:
            problems.append(f"a normal prompt failed: {result.error!r}")
    plan = ctx.use(Plan(gate_after=1, pad_to=4))
    twin = ctx.twin()

    async def cancelled() -> None:
        response = twin.prompt(ctx.samples.prompt, **ctx.prompt_kwargs())
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in response:
                first.set()

        task = asyncio.create_task(consume())
        try:
            await asyncio.wait_for(first.wait(), MODEL_BOUND)  # the model's first chunk
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            plan.gate.set()

    ctx.loop(cancelled)
    ctx.use(Plan(raise_after=1, pad_to=2, error=lambda: InjectedHygieneError("hygiene")))
    ctx.twin_run()
    for record in ctx.instrument.records:
        record.done.wait(BOUND)
    return Batch(before, problems)


def _batch(ctx: Context) -> Batch:
    batch = getattr(ctx.bench, "hygiene_batch", None)
    if batch is None:
        batch = _run_batch(ctx)
        ctx.bench.hygiene_batch = batch  # type: ignore[attr-defined]
    assert not batch.problems, "; ".join(batch.problems)
    return batch


def _settled(found: Any) -> dict[Any, Any]:
    """Bounded polling until ``found()`` is empty; returns what is left."""
    left: dict[Any, Any] = {}

    def empty() -> bool:
        nonlocal left
        left = found()
        return not left

    wait_until(empty, BOUND, collect=True)
    return left


class HygieneClauses:
    """hygiene.*: resources after a batch of prompts."""

    @clause("hygiene.threads")
    def test_hygiene_threads(self, llm_conformance: Context) -> None:
        batch = _batch(llm_conformance)
        left = _settled(lambda: resources.new_threads(batch.before))
        assert not left, f"thread(s) left behind after {BOUND:g}s: {sorted(left.values())}"

    @clause("hygiene.fds")
    def test_hygiene_fds(self, llm_conformance: Context) -> None:
        batch = _batch(llm_conformance)
        if batch.before.fds is None:
            pytest.skip("this platform has no /proc/self/fd to list open file descriptors")
        left = _settled(lambda: resources.new_fds(batch.before))
        assert not left, f"file descriptor(s) left open: {left}"

    @clause("hygiene.children")
    def test_hygiene_children(self, llm_conformance: Context) -> None:
        batch = _batch(llm_conformance)
        if batch.before.children is None:
            pytest.skip("this platform has no /proc to list child processes")
        left = _settled(lambda: resources.new_children(batch.before))
        assert not left, f"child process(es) still running: {left}"
