"""Streaming through a twin: order, incremental delivery, worker thread, context, backpressure."""

from __future__ import annotations

import sys
import threading

import llm
import pytest
from fake_models import REQUEST_ID, Endless, Wait, script
from helpers import wait_until

pytestmark = pytest.mark.usefixtures("no_leaked_workers")


async def test_chunks_arrive_in_order():
    prompt, run = script(*[f"{i} " for i in range(50)])
    response = llm.get_async_model("probe").prompt(prompt)
    chunks = [chunk async for chunk in response]
    assert chunks == [f"{i} " for i in range(50)]
    assert await response.text() == "".join(chunks)
    assert run.finally_runs == 1


async def test_first_chunk_arrives_while_the_generator_still_runs():
    release = threading.Event()
    prompt, run = script("first", Wait(release), "second")
    response = llm.get_async_model("probe").prompt(prompt)
    iterator = response.__aiter__()
    assert await iterator.__anext__() == "first"
    assert not run.finished.is_set()  # the model is blocked inside Wait, before "second"
    release.set()
    assert await iterator.__anext__() == "second"


async def test_execute_runs_on_a_named_worker_thread_not_the_loop_thread():
    prompt, run = script("a", "b")
    await llm.get_async_model("probe").prompt(prompt).text()
    assert set(run.threads) == {"llm-async:probe"}
    assert threading.current_thread().name not in run.threads
    assert run.closed_on is None  # exhausted normally, never forced closed


async def test_caller_contextvars_are_visible_in_execute():
    prompt, run = script("a")
    token = REQUEST_ID.set("req-42")
    try:
        await llm.get_async_model("probe").prompt(prompt).text()
    finally:
        REQUEST_ID.reset(token)
    assert run.context_value == "req-42"


async def test_stream_false_still_returns_the_text():
    prompt, _ = script("a", "b")
    assert await llm.get_async_model("probe").prompt(prompt, stream=False).text() == "ab"


@pytest.mark.parametrize("buffer", [1, 4, 32])
async def test_stalled_consumer_pauses_the_generator(monkeypatch, buffer):
    monkeypatch.setenv("LLM_ASYNC_BUFFER", str(buffer))
    prompt, run = script(Endless())
    response = llm.get_async_model("probe").prompt(prompt)
    iterator = response.__aiter__()
    await iterator.__anext__()
    # At most `buffer` chunks may be out of the generator and not yet consumed, the one just
    # received included: the worker fills that, then must wait for room.
    wait_until(lambda: run.pulled == buffer, what=f"{buffer} chunks pulled")
    worker = next(t for t in threading.enumerate() if t.name == "llm-async:probe")
    wait_until(
        lambda: "wait_for_room" in _stack_functions(worker.ident),
        what="the worker to wait for room",
    )
    assert run.pulled == buffer
    await response._generator.aclose()
    wait_until(lambda: run.finally_runs == 1, what="generator closed")


def _stack_functions(ident: int | None) -> set[str]:
    frame = sys._current_frames().get(ident)  # type: ignore[arg-type]
    names = set()
    while frame is not None:
        names.add(frame.f_code.co_name)
        frame = frame.f_back
    return names


@pytest.mark.skipif(
    not hasattr(llm, "StreamEvent") and not hasattr(getattr(llm, "parts", None), "StreamEvent"),
    reason="StreamEvent chunks exist from llm 0.32; install llm>=0.32 to run",
)
async def test_stream_events_pass_through_unchanged():
    from llm.parts import StreamEvent

    event = StreamEvent(type="reasoning", chunk="thinking")
    prompt, _ = script(event, "answer")
    response = llm.get_async_model("probe").prompt(prompt)
    events = (
        [e async for e in response.astream_events()]
        if hasattr(response, "astream_events")
        else None
    )
    assert await response.text() == "answer"
    if events is not None:
        assert [(e.type, e.chunk) for e in events] == [
            ("reasoning", "thinking"),
            ("text", "answer"),
        ]
