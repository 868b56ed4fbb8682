"""Concurrency clauses: the per-model limit holds, results match serial ones, fds 1/2 survive."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from .. import adapter
from ..context import Context
from ..instrument import Plan
from ..marks import clause
from ..resources import describe_fd, fd_identity, stdio_kept
from ..subject import RunResult, differences, short
from ..waiting import MODEL_BOUND, POLL, async_wait_until
from .streaming import text_of

BOUND = 15.0
VIOLATION_WINDOW = 0.3  # bounded wait for an execute beyond the limit to start
STDIO = ((1, "stdout"), (2, "stderr"))
T = TypeVar("T")


def limit_of(ctx: Context) -> int:
    declared = ctx.caps.values.get("model_concurrency")
    if declared is not None:
        return int(declared)
    return adapter.configured_concurrency(ctx.model_id) or 1


def reachable(ctx: Context, limit: int) -> tuple[int, str]:
    """How many executes may overlap: the model limit, capped by the global thread limit."""
    found = adapter.settings_of(ctx.model_id)
    if found is None:
        return limit, f"model_concurrency={limit}"
    cap = min(limit, int(found.max_threads))
    return cap, (
        f"model_concurrency={limit}, max_threads={found.max_threads}, affinity={found.affinity}"
    )


async def _overlapped(
    ctx: Context, count: int, limit: int, observe: Callable[[], T] | None = None
) -> tuple[list[RunResult], int, bool, T | None]:
    """Start ``count`` prompts held after their first chunk; release them once ``limit`` run.

    ``observe`` is called while they are all held mid-stream (on the loop's thread): what it
    sees is the process as the overlapping executes leave it, with no race in the way.
    """
    plan = ctx.use(Plan(gate_after=1, pad_to=2))
    twin = ctx.twin()
    tasks = [asyncio.ensure_future(ctx.async_run(model=twin)) for _ in range(count)]
    observed: T | None = None
    try:
        reached = await _wait_held(ctx, min(count, limit))
        # Bounded wait for a violation: one more execute than allowed starting.
        await async_wait_until(lambda: ctx.instrument.active > limit, VIOLATION_WINDOW)
        if observe is not None:
            observed = observe()
    finally:
        plan.gate.set()
    # The rest is the model's own work: whole replies, one after another at model_concurrency.
    done, pending = await asyncio.wait(tasks, timeout=MODEL_BOUND)
    for task in pending:
        task.cancel()
    results = [
        t.result()
        if t in done and not t.cancelled()
        else RunResult(error=TimeoutError("did not finish"))
        for t in tasks
    ]
    return results, ctx.instrument.max_active, reached, observed


async def _wait_held(ctx: Context, target: int) -> bool:
    """Wait until ``target`` executes are paused after their first chunk.

    An execute that has started may take the model's own time to its first chunk (up to
    MODEL_BOUND: weights loaded per execute); once every started execute is held, the adapter
    gets BOUND to start another, so one that admits too few is seen in seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MODEL_BOUND
    progress = (-1, -1)
    progressed = loop.time()
    while True:
        held, started = _held(ctx), len(ctx.instrument.records)
        now = loop.time()
        if held >= target:
            return True
        if (held, started) != progress:
            progress, progressed = (held, started), now
        waiting_for_model = started - _finished(ctx) > held
        if now >= deadline or (not waiting_for_model and now - progressed >= BOUND):
            return False
        await asyncio.sleep(POLL)


def _finished(ctx: Context) -> int:
    return sum(1 for r in list(ctx.instrument.records) if r.done.is_set())


def _held(ctx: Context) -> int:
    """Executes paused after their first chunk right now."""
    return sum(
        1 for r in list(ctx.instrument.records) if r.gate_reached.is_set() and not r.done.is_set()
    )


def _stdio() -> dict[int, tuple[Any, str]]:
    return {fd: (fd_identity(fd), describe_fd(fd)) for fd, _ in STDIO}


class ConcurrencyClauses:
    """concurrency.*: many prompts at once on one model."""

    @clause("concurrency.limit")
    def test_concurrency_limit(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        limit = limit_of(ctx)
        expected, settings = reachable(ctx, limit)
        count = max(ctx.samples.concurrent_prompts, limit + 1)
        with stdio_kept():
            results, most, reached, _ = ctx.loop(lambda: _overlapped(ctx, count, expected))
        failed = [r.error for r in results if r.error is not None]
        assert most <= limit, (
            f"{most} executes ran at once although model_concurrency={limit}: the adapter "
            "does not serialise this model"
        )
        assert reached, (
            f"only {most} of {count} prompts ran at once although {settings} allows {expected}"
        )
        assert not failed, f"{len(failed)} of {count} concurrent prompts failed: {failed[0]!r}"
        ctx.note(f"{count} prompts, at most {most} at once ({settings})")

    @clause("concurrency.same_results")
    def test_concurrency_same_results(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        count = max(2, ctx.samples.concurrent_prompts)
        ctx.use(Plan())
        serial = [ctx.twin_run() for _ in range(count)]
        twin = ctx.twin()

        async def main() -> list[RunResult]:
            return list(await asyncio.gather(*(ctx.async_run(model=twin) for _ in range(count))))

        ctx.use(Plan())
        with stdio_kept():
            concurrent = ctx.loop(main)
        errors = [r.error for r in concurrent if r.error is not None]
        assert not errors, f"{len(errors)} of {count} concurrent prompts failed: {errors[0]!r}"
        # Observed directly, whatever the model says: each consumer got what its own execute()
        # yielded, nothing of another's (no cross-talk through shared state).
        yielded = sorted(
            tuple(t for t in (text_of(c.value) for c in record.chunks) if t is not None)
            for record in ctx.records(count)
        )
        received = sorted(tuple(result.chunks) for result in concurrent)
        if yielded != received:
            pytest.fail(
                f"{count} concurrent prompts: the chunks the consumers received "
                f"{short(received)} are not the chunks their executes yielded "
                f"{short(yielded)}: streams mixed up while they overlapped",
                pytrace=False,
            )
        if not ctx.deterministic(reseeded=False):
            ctx.note(
                f"{count} concurrent prompts each got exactly what its execute() yielded; "
                "not compared with serial runs: " + ctx.nondeterminism()
            )
            return
        for index, (one, other) in enumerate(zip(serial, concurrent, strict=False)):
            found = differences(one.said(), other.said(), ("serial", "concurrent"))
            if found:
                pytest.fail(
                    f"prompt {index + 1}: "
                    + "; ".join(found)
                    + (
                        ctx.state_note()
                        or " (the model says the same on serial runs: its output depends on "
                        "what runs beside it, i.e. state shared between concurrent executes)"
                    ),
                    pytrace=False,
                )
        ctx.note(
            f"{count} concurrent prompts each got exactly what its execute() yielded, "
            "identical to serial ones"
        )

    @clause("concurrency.stdio")
    def test_concurrency_stdio(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        limit = limit_of(ctx)
        expected, _ = reachable(ctx, limit)
        count = max(ctx.samples.concurrent_prompts, limit + 1)
        before = _stdio()
        saved = {fd: os.dup(fd) for fd, _ in STDIO if before[fd][0] is not None}
        problems = []
        try:
            results, _, _, during = ctx.loop(
                lambda: _overlapped(ctx, count, expected, lambda: (_held(ctx), _stdio()))
            )
            held, seen = during or (0, before)
            if held >= 2:  # overlapping executes: a save/restore redirect races
                for fd, name in STDIO:
                    if seen[fd][0] != before[fd][0]:
                        problems.append(
                            f"while {held} executes overlapped (each paused after its first "
                            f"chunk), fd {fd} ({name}) pointed to {seen[fd][1]} instead of "
                            f"{before[fd][1]}"
                        )
            for fd, name in STDIO:
                identity, where = before[fd]
                now = fd_identity(fd)
                if now != identity:
                    problems.append(
                        f"fd {fd} ({name}) pointed to {where} before and to {describe_fd(fd)} after"
                    )
                    continue
                try:
                    os.write(fd, b"")
                except OSError as error:
                    problems.append(f"fd {fd} ({name}) no longer accepts writes: {error}")
        finally:
            for fd, copy in saved.items():
                if fd_identity(fd) != before[fd][0]:
                    os.dup2(copy, fd)
                os.close(copy)
        assert not problems, (
            f"{count} concurrent prompts (model_concurrency={limit}): "
            + "; ".join(problems)
            + ": the model redirects file descriptors process-wide (os.dup2); overlapping runs "
            "each save and restore them, so the last to finish may restore another's redirect "
            "(a race); keep model_concurrency at 1 for it, or run it with "
            "LLM_ASYNC_ISOLATION=process"
        )
        failed = [r.error for r in results if r.error is not None]
        assert not failed, f"{len(failed)} concurrent prompts failed: {failed[0]!r}"
        ctx.note(
            f"fds 1 and 2 unchanged while {held} executes overlapped and after {count} prompts "
            f"(model_concurrency={limit})"
        )
