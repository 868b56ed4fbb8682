"""Regressions of the thread path found by review and by unseen plugins (issue 9, defects 1-8).

Each test states the behaviour a user relies on; each failed before its fix.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import llm
import pytest
from fake_models import script
from helpers import eventually, wait_until

from llm_all_models_async import ResponseTimeoutError, limits, workers
from llm_all_models_async.bridge import Deadlines, open_stream

# Not for the dedicated-thread tests: a model's dedicated thread lives as long as the process.
no_leaked_workers = pytest.mark.usefixtures("no_leaked_workers")


# -- 1. LLM_ASYNC_TIMEOUT holds while the consumer is slower than the model ---------------


@no_leaked_workers
async def test_response_timeout_fires_while_chunks_are_buffered():
    """A consumer slower than the model finds a chunk buffered every time it asks; the
    response timeout must still end the stream rather than hand over chunk after chunk."""
    limit = 0.2
    allowed = threading.Semaphore(1)
    pulled = []

    def model() -> Iterator[str]:
        while True:
            allowed.acquire()
            pulled.append(1)
            yield "x"

    stream = open_stream(
        "slow-consumer",
        model,
        capacity=8,
        deadlines=Deadlines(timeout=limit),
        started_at=time.monotonic(),
        submit=lambda job, stop: threading.Thread(
            target=job, name="llm-async:slow", daemon=True
        ).start(),
        on_exit=lambda: None,
    )
    assert await stream.next_batch() == ["x"]
    allowed.release()
    wait_until(lambda: len(stream.channel.items) == 1, what="the next chunk to be buffered")
    wait_until(lambda: time.monotonic() - stream._started_at > limit, what="the deadline")
    with pytest.raises(ResponseTimeoutError):
        await stream.next_batch()
    stream.stop()
    allowed.release()
    wait_until(stream.channel.closed.is_set, what="the generator to close")


# -- 2. SlotLimiter survives a clean-up that re-enters it on the same thread ----------------


def test_limiter_cleanup_reentering_from_the_thread_holding_the_lock():
    limiter = limits.SlotLimiter("reentry", limit=1)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(limiter.acquire())  # the only slot
    waiting = limiter.acquire()
    task = loop.create_task(waiting)
    loop.run_until_complete(asyncio.sleep(0))  # the waiter is now in line
    assert limiter.waiting == 1
    loop.close()  # its loop goes away with the waiter still in line
    task._log_destroy_pending = False  # type: ignore[attr-defined]  # abandoned on purpose

    def collected_while_locked() -> None:
        # What a garbage collection does when it frees the abandoned coroutine while this
        # thread is inside a locked section of the limiter.
        with limiter._lock:
            waiting.close()

    thread = threading.Thread(target=collected_while_locked, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the clean-up deadlocked on the limiter's own lock"
    assert limiter.waiting == 0
    limiter.release()
    assert limiter.in_use == 0
    del task


# -- 3. a dedicated thread keeps nothing of a finished job ---------------------------------


class _Payload:
    """Stands for what a job holds: the prompt, attachments, the copied context."""


def test_dedicated_thread_drops_a_finished_job():
    payload = _Payload()
    alive = weakref.ref(payload)
    done = threading.Event()

    def job(held: Any = payload) -> None:
        done.set()

    worker = workers.DedicatedThread("drop-finished-job")
    worker.submit(job, lambda: None)
    del job, payload
    assert done.wait(10)
    wait_until(lambda: alive() is None, timeout=5, what="the finished job to be freed")


@no_leaked_workers
def test_pooled_thread_drops_a_finished_job():
    payload = _Payload()
    alive = weakref.ref(payload)
    done = threading.Event()

    def job(held: Any = payload) -> None:
        done.set()

    workers.start_thread("drop-finished-job", job, lambda: None)
    del job, payload
    assert done.wait(10)
    wait_until(lambda: alive() is None, timeout=5, what="the finished job to be freed")


async def test_affinity_model_frees_the_prompt_after_the_stream(monkeypatch):
    monkeypatch.setenv("LLM_ASYNC_AFFINITY", "model")
    # Not `probe`: its dedicated thread would outlive the test, and other tests wait for
    # every `llm-async:probe` thread to end.
    response = llm.get_async_model("rerouting").prompt("x")
    assert await response.text() == "routed"
    alive = weakref.ref(response.prompt)
    del response
    wait_until(lambda: alive() is None, timeout=5, what="the finished prompt to be freed")


# -- 4. the worker closes the iterator it advanced -----------------------------------------


class _IterableResult:
    """What some plugins return from ``execute()``: an iterable, not the generator itself."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def __iter__(self) -> Iterator[str]:
        return self._generate()

    def _generate(self) -> Iterator[str]:
        try:
            while True:
                yield "x"
        finally:
            self.events.append("model finally on " + threading.current_thread().name)

    def close(self) -> None:  # closes something of its own, not the generator
        self.events.append("wrapper closed")


@no_leaked_workers
async def test_generator_of_an_iterable_result_closes_before_the_slot_is_freed():
    events: list[str] = []
    stream = open_stream(
        "iterable-result",
        lambda: _IterableResult(events),
        capacity=2,
        deadlines=Deadlines(),
        started_at=time.monotonic(),
        submit=lambda job, stop: threading.Thread(
            target=job, name="llm-async:it", daemon=True
        ).start(),
        on_exit=lambda: events.append("slot released"),
    )
    assert await stream.next_batch()
    stream.stop()
    wait_until(lambda: "slot released" in events, what="the slot to be released")
    assert events[0] == "model finally on llm-async:it"
    assert events.index("model finally on llm-async:it") < events.index("slot released")


# -- 5. a dedicated thread that cannot start frees the slots -------------------------------


async def test_dedicated_thread_start_failure_frees_the_slots(monkeypatch):
    monkeypatch.setenv("LLM_ASYNC_AFFINITY", "model")
    monkeypatch.setattr(workers, "_dedicated", {})
    real_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        if self.name.startswith(workers.THREAD_PREFIX):
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    twin = llm.get_async_model("probe")
    model_slots = limits.model_limiter(limits_key(twin), 1)
    threads_before = limits.global_threads.in_use
    prompt, _run = script("a")
    with pytest.raises(RuntimeError, match="can't start new thread"):
        await twin.prompt(prompt).text()
    assert model_slots.in_use == 0
    assert limits.global_threads.in_use == threads_before
    monkeypatch.undo()
    prompt, _run = script("works again")
    assert await llm.get_async_model("probe").prompt(prompt).text() == "works again"


def limits_key(twin: Any) -> tuple[str, str, str]:
    from llm_all_models_async.identity import model_key

    return model_key(twin.sync_model)


# -- 6. execute_tool_call from a sync execute() notices a stop -----------------------------

pytest_tools = pytest.mark.skipif(
    not hasattr(llm.AsyncResponse, "execute_tool_call"),
    reason="AsyncResponse.execute_tool_call exists from llm 0.32; install llm>=0.32 to run",
)


@no_leaked_workers
@pytest_tools
async def test_blocked_tool_call_ends_when_the_consumer_cancels():
    from fake_models import ToolRunner

    entered = asyncio.Event()
    never = asyncio.Event()

    async def stuck_tool(x: int) -> str:
        "A tool that never returns."
        entered.set()
        await never.wait()
        return "unreachable"

    ToolRunner.outcomes = []
    response = llm.get_async_model("tool-runner").prompt("go", tools=[stuck_tool])
    task = asyncio.ensure_future(response.text())
    await asyncio.wait_for(entered.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The worker must leave the wait (and the model its execute()) without the tool.
    await eventually(lambda: bool(ToolRunner.outcomes), "the tool call to end")
    assert ToolRunner.outcomes == ["StreamStopped"]


# -- 7. a key set on the twin reaches a plain Model that resolves its key itself ------------


@no_leaked_workers
async def test_key_set_on_twin_reaches_a_model_calling_get_key():
    sync = llm.get_model("self-keyed")
    sync.key = "from-model"
    assert sync.prompt("x").text() == "key=from-model"
    twin = llm.get_async_model("self-keyed")
    twin.key = "from-twin"
    assert await twin.prompt("x").text() == "key=from-twin"
    # The sync instance, which other prompts may share, keeps its own key.
    assert twin.sync_model.key is None


# -- 8. response writes during/after the last chunk behave as on the sync path -------------


def _logged(response: llm.Response) -> tuple[str, str | None]:
    """What ``llm logs`` records of the model for ``response`` (``log_to_db`` reads these)."""
    return (response.model.model_id, response.resolved_model)


@no_leaked_workers
async def test_model_and_resolved_model_writes_log_as_on_the_sync_path():
    from fake_models import Rerouting

    Rerouting.seen = []
    sync_response = llm.get_model("rerouting").prompt("x")
    assert sync_response.text() == "routed"
    async_response = llm.get_async_model("rerouting").prompt("x")
    assert await async_response.text() == "routed"
    sync_seen, async_seen = Rerouting.seen
    assert async_seen == sync_seen  # what the plugin reads back after writing
    logged_sync = _logged(sync_response)
    logged_async = _logged(await async_response.to_sync_response())
    assert logged_async == logged_sync == ("rerouting-target", "rerouting-resolved")
    assert isinstance(async_response.model, llm.AsyncModel)


@no_leaked_workers
async def test_writes_after_the_response_was_dropped_never_raise_into_the_model():
    from fake_models import Rerouting

    Rerouting.late_errors = []
    Rerouting.closed = threading.Event()
    response = llm.get_async_model("rerouting").prompt("late")
    iterator = response.__aiter__()
    assert await iterator.__anext__() == "first"
    del iterator, response
    gc.collect()
    await eventually(Rerouting.closed.is_set, "the model's finally to run")
    assert Rerouting.late_errors == []
