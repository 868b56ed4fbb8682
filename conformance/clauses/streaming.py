"""Streaming clauses: the first chunk arrives while the generator is paused; order; stream=False."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from .. import features
from ..context import Context
from ..instrument import Plan
from ..marks import clause
from ..waiting import MODEL_BOUND, async_wait_until

BOUND = 10.0


def text_of(value: Any) -> str | None:
    """The text a yielded value contributes to the response (None for non-text events)."""
    if isinstance(value, str):
        return value
    if getattr(value, "type", None) == "text":
        return value.chunk
    return None


def first_difference(left: list[Any], right: list[Any]) -> str:
    for index, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            return f"at index {index}: {a!r} != {b!r}"
    return f"lengths {len(left)} != {len(right)}"


class StreamingClauses:
    """streaming.*: incremental delivery, order, and stream=False."""

    @clause("streaming.incremental")
    def test_streaming_incremental(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        ctx.require("can_stream")
        plan = ctx.use(Plan(gate_after=1))
        twin = ctx.twin()
        use_events = features.has_astream_events()

        def model_yielded() -> bool:
            records = ctx.instrument.records
            return bool(records and records[0].chunks)

        async def main() -> dict[str, Any]:
            response = twin.prompt(ctx.samples.prompt, **ctx.prompt_kwargs())
            stream = response.astream_events() if use_events else response.__aiter__()
            pending = asyncio.ensure_future(stream.__anext__())
            try:
                # The model's own time to its first chunk is not judged (weights loaded in
                # every execute() take seconds on a busy machine); its delivery is.
                await async_wait_until(lambda: pending.done() or model_yielded(), MODEL_BOUND)
                first = await asyncio.wait_for(pending, BOUND)
            except asyncio.TimeoutError:
                return {"first": None, "yielded": model_yielded()}
            finally:
                record = ctx.instrument.records[0] if ctx.instrument.records else None
                # The generator cannot finish before the gate opens: still running = paused.
                paused = bool(record and not record.done.is_set())
                delay = time.monotonic() - record.chunks[0].at if record and record.chunks else None
                plan.gate.set()
            rest = [item async for item in stream]
            return {"first": first, "paused": paused, "delay": delay, "rest": rest}

        outcome = ctx.loop(main)
        assert outcome["first"] is not None or outcome["yielded"], (
            f"the model yielded no first chunk within {MODEL_BOUND:g}s; cannot judge delivery"
        )
        assert outcome["first"] is not None, (
            f"no chunk reached the consumer within {BOUND:g}s while the sync generator was "
            "paused after yielding its first chunk: the twin waits for more chunks (or for the "
            "end) before delivering"
        )
        assert outcome["paused"], (
            "the first chunk arrived only after the sync generator had finished"
        )
        record = ctx.records(1)[0]
        received = 1 + len(outcome["rest"])
        yielded = [c.value for c in record.chunks]
        if not use_events:
            yielded = [v for v in yielded if text_of(v) is not None]
        assert received == len(yielded), (
            f"the generator yielded {len(yielded)} chunk(s), the consumer got {received}"
        )
        ctx.note(
            f"first chunk delivered {outcome['delay'] * 1000:.1f} ms after it was yielded, "
            f"while the generator was paused; {received} chunk(s) in all"
        )

    @clause("streaming.order")
    def test_streaming_order(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        ctx.use(Plan())
        result = ctx.twin_run()
        assert result.error is None, f"{type(result.error).__name__}: {result.error}"
        yielded = [t for t in (text_of(c.value) for c in ctx.records(1)[0].chunks) if t is not None]
        assert result.chunks == yielded, (
            "the consumer received the text chunks in a different order than the sync "
            f"generator yielded them in the same run: {first_difference(yielded, result.chunks)}"
        )
        if not ctx.deterministic():
            ctx.note("order checked within the run only: " + ctx.nondeterminism())
            return
        expected = ctx.reference().chunks
        if result.chunks != expected:
            pytest.fail(
                "the twin's chunks differ from the sync model's for the same prompt and seed "
                f"({first_difference(expected, result.chunks)})"
                + (ctx.state_note() or ": the model's output depends on the thread it runs on"),
                pytrace=False,
            )
        ctx.note(f"{len(expected)} chunk(s) in the sync model's order")

    @clause("streaming.no_stream")
    def test_streaming_no_stream(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        ctx.use(Plan())
        result = ctx.twin_run(stream=False)
        assert result.error is None, f"{type(result.error).__name__}: {result.error}"
        record = ctx.records(1)[0]
        assert record.args.get("stream") is False, (
            f"execute() received stream={record.args.get('stream')!r} for stream=False"
        )
        yielded = "".join(t for t in (text_of(c.value) for c in record.chunks) if t is not None)
        assert result.text == yielded, (
            f"stream=False returned {result.text!r} but execute() yielded {yielded!r}"
        )
        assert result.text, "stream=False returned no text"
