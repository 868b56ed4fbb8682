"""Torture tests: hostile model behaviour the adapter must survive without hanging or lying.

Slow first chunks, a ``next()`` blocked in C code, exceptions (including ``KeyboardInterrupt``
and ``SystemExit``), generators that ignore ``GeneratorExit``, ``None`` and non-str chunks, a
flood of tiny chunks, one huge chunk, an unlocked lazy load and a thread-bound runtime.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import fake_models
import llm
import pytest
import torture_models
from fake_models import Endless, LazyLoad, Raise, ThreadBound, Wait, script
from helpers import eventually, wait_event, worker_threads

import llm_all_models_async
from llm_all_models_async import limits, twins

torture_models.register()

BOUND = 10.0  # no await in these tests may take longer than this


async def collect(response: Any, into: list[Any]) -> None:
    """Iterate ``response`` into ``into``, so chunks received before an error stay visible."""
    async for chunk in response:
        into.append(chunk)


@pytest.fixture
def gate() -> Iterator[Callable[[], threading.Event]]:
    """Events that hold a model; all are set at teardown, so a failed test blocks no worker."""
    made: list[threading.Event] = []

    def make() -> threading.Event:
        made.append(threading.Event())
        return made[-1]

    yield make
    for event in made:
        event.set()


# --------------------------------------------------------------------------- slow first chunk


@pytest.mark.usefixtures("no_leaked_workers")
async def test_slow_first_chunk_waits_without_a_first_chunk_timeout(monkeypatch, gate):
    # An idle timeout must not apply before the first chunk: only the first-chunk limit does.
    monkeypatch.setenv("LLM_ASYNC_IDLE_TIMEOUT", "0.2")
    release = gate()
    prompt, run = script(Wait(release), "late", "on time")
    task = asyncio.ensure_future(llm.get_async_model("probe").prompt(prompt).text())
    await wait_event(run.started, "the model to start")
    # The caller waits for the first chunk now. An idle timer armed for that wait is due
    # before this release (the loop runs timers in deadline order), so it would always win.
    asyncio.get_running_loop().call_later(1.2, release.set)  # six idle timeouts later
    assert await asyncio.wait_for(task, BOUND) == "lateon time"
    assert run.finally_runs == 1
    assert run.generator_exit == 0


@pytest.mark.serial  # asserts a wall-clock bound
@pytest.mark.usefixtures("no_leaked_workers")
async def test_first_chunk_timeout_fires_and_closes_the_generator(monkeypatch, gate):
    monkeypatch.setenv("LLM_ASYNC_FIRST_CHUNK_TIMEOUT", "0.1")
    release = gate()
    prompt, run = script(Wait(release), "late", Endless())
    response = llm.get_async_model("probe").prompt(prompt)
    started = time.monotonic()
    with pytest.raises(llm_all_models_async.FirstChunkTimeoutError) as info:
        await asyncio.wait_for(response.text(), BOUND)
    elapsed = time.monotonic() - started
    error = info.value
    assert isinstance(error, TimeoutError)
    assert (error.model_id, error.setting, error.limit) == (
        "probe",
        "LLM_ASYNC_FIRST_CHUNK_TIMEOUT",
        0.1,
    )
    assert "'probe'" in str(error) and "LLM_ASYNC_FIRST_CHUNK_TIMEOUT=0.1s" in str(error)
    assert 0.1 <= elapsed < 5
    assert not run.finished.is_set()  # the caller was released while the model still waits
    release.set()
    await eventually(lambda: run.finally_runs == 1, "the generator to be closed")
    assert run.generator_exit == 1
    assert run.closed_on == "llm-async:probe"
    assert run.pulled == 1  # "late" was in flight when the stream stopped; nothing after it


async def test_first_chunk_clock_starts_with_execute_under_model_affinity(monkeypatch, gate):
    monkeypatch.setenv("LLM_ASYNC_AFFINITY", "model")
    monkeypatch.setenv("LLM_ASYNC_MODEL_CONCURRENCY", "2")
    monkeypatch.setenv("LLM_ASYNC_FIRST_CHUNK_TIMEOUT", "0.5")
    release = gate()
    first_prompt, first_run = script("a", Wait(release), "b")
    second_prompt, second_run = script("second")
    first = llm.get_async_model("probe-dedicated").prompt(first_prompt)
    iterator = first.__aiter__()
    assert await asyncio.wait_for(iterator.__anext__(), BOUND) == "a"
    # The first stream keeps the model's one thread busy; the second waits for that thread.
    second = asyncio.ensure_future(
        llm.get_async_model("probe-dedicated").prompt(second_prompt).text()
    )
    await asyncio.sleep(0)  # the second prompt's first step: a clock started by it is running
    # A first-chunk clock started by the prompt rather than by execute() is due before this
    # release (the loop runs timers in deadline order), so it would always fire first.
    asyncio.get_running_loop().call_later(1.0, release.set)  # twice the first-chunk limit
    try:
        assert await asyncio.wait_for(second, BOUND) == "second"
    finally:
        release.set()
        assert await asyncio.wait_for(first.text(), BOUND) == "ab"
    assert second_run.started.is_set() and first_run.finally_runs == 1


# --------------------------------------------------------------------------- blocking next()


@pytest.mark.serial  # asserts a wall-clock bound
@pytest.mark.usefixtures("no_leaked_workers")
async def test_cancel_releases_the_caller_while_next_blocks_in_c_code():
    key, record = torture_models.new_record("read")
    write_fd = torture_models.blocking_read(key)
    read_fd = torture_models.PIPES[key][0]
    try:
        response = llm.get_async_model("torture-blocking-read").prompt(key)
        iterator = response.__aiter__()
        assert await asyncio.wait_for(iterator.__anext__(), BOUND) == "first"
        task = asyncio.ensure_future(iterator.__anext__())
        await asyncio.sleep(0)  # let the task start awaiting the second chunk
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, BOUND)
        assert time.monotonic() - cancelled_at < 1.0
        # Released while the worker is still stuck in os.read: nothing has closed the model.
        assert not record.finished.is_set()
        assert [t.name for t in worker_threads()].count("llm-async:torture-blocking-read") == 1
        os.write(write_fd, b"x")  # now next() returns; the generator must be closed after it
        await eventually(lambda: record.finally_runs == 1, "the generator to be closed")
        assert record.cancelled_seen is True  # cancelled() said so when the read returned
        assert record.generator_exit == 1
        assert record.closed_on == "llm-async:torture-blocking-read"
        assert record.pulled == 2  # the chunk after the read was in flight; nothing more
        assert "after the read" not in response._chunks
    finally:
        os.write(write_fd, b"x")  # a failed test must not leave the worker in os.read
        await asyncio.to_thread(record.finished.wait, BOUND)
        os.close(read_fd)
        os.close(write_fd)


# --------------------------------------------------------------------------- exceptions


@pytest.mark.usefixtures("no_leaked_workers")
async def test_mid_stream_exception_reaches_the_consumer_unchanged():
    received: list[Any] = []
    response = llm.get_async_model("torture-explode").prompt("go")
    with pytest.raises(torture_models.TortureError) as info:
        await asyncio.wait_for(collect(response, received), BOUND)
    assert received == ["one ", "two "]
    assert type(info.value) is torture_models.TortureError
    assert str(info.value) == "boom after 2 chunks"
    names = [(f.name, os.path.basename(f.filename)) for f in traceback.extract_tb(info.tb)]
    assert ("execute", "torture_models.py") in names
    assert names[-1] == ("_explode", "torture_models.py")  # raised where the model raised it

    # The sync path raises the same type and message after the same chunks.
    sync_received: list[Any] = []
    with pytest.raises(torture_models.TortureError, match=r"^boom after 2 chunks$"):
        for chunk in llm.get_model("torture-explode").prompt("go"):
            sync_received.append(chunk)
    assert sync_received == received


@pytest.mark.usefixtures("no_leaked_workers")
@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("how", ["iterate", "text"])
async def test_keyboard_interrupt_and_system_exit_are_never_a_successful_response(exc_type, how):
    prompt, run = script("partial ", Raise(exc_type("from the model")), "never")
    response = llm.get_async_model("probe").prompt(prompt)
    received: list[Any] = []
    outcome: Any = "no exception"
    # Awaited directly, not through asyncio.wait_for: a KeyboardInterrupt escaping a task
    # brings the event loop down; here it must stop inside this coroutine.
    try:
        if how == "text":
            outcome = await response.text()
        else:
            await collect(response, received)
    except BaseException as exc:  # caught here, inside the coroutine, whatever it is
        outcome = exc
    assert type(outcome) is exc_type, f"expected {exc_type.__name__}, got {outcome!r}"
    assert outcome.args == ("from the model",)
    if how == "iterate":
        assert received == ["partial "]
    assert run.finally_runs == 1
    assert run.threads and set(run.threads) == {"llm-async:probe"}

    # Same type as the sync path.
    sync_prompt, _ = script("partial ", Raise(exc_type("from the model")))
    with pytest.raises(exc_type):
        llm.get_model("probe").prompt(sync_prompt).text()


# --------------------------------------------------------------------------- GeneratorExit ignored


@pytest.mark.usefixtures("no_leaked_workers")
async def test_generator_ignoring_generator_exit_is_logged_and_does_not_hang(caplog):
    prompt, run = script("first", Endless(), ignore_close=True)
    response = llm.get_async_model("probe").prompt(prompt)
    received: list[Any] = []
    with caplog.at_level(logging.WARNING, logger="llm_all_models_async"):
        async for chunk in response:
            received.append(chunk)
            break
        await asyncio.wait_for(response._generator.aclose(), BOUND)
        await eventually(lambda: run.generator_exit == 1, "the close to reach the model")
        await eventually(
            lambda: "llm-async:probe" not in [t.name for t in worker_threads()],
            "the worker thread to exit",
        )
    assert received == ["first"]
    assert run.closed_on == "llm-async:probe"
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "'probe'" in r.getMessage()
    ]
    assert warnings, f"no warning naming the model; got {caplog.text!r}"
    assert "ignored GeneratorExit" in warnings[0].getMessage()
    assert "ignored close" not in response._chunks


@pytest.mark.usefixtures("no_leaked_workers")
# Python itself complains (an unraisable RuntimeError) when it finalises such a generator.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_generator_that_never_closes_does_not_hang_the_caller_or_keep_its_thread(caplog):
    torture_models.Immortal.closes = 0
    response = llm.get_async_model("torture-immortal").prompt("go")
    with caplog.at_level(logging.WARNING, logger="llm_all_models_async"):
        async for chunk in response:
            assert chunk == "again "
            break
        await asyncio.wait_for(response._generator.aclose(), BOUND)
        await eventually(
            lambda: "llm-async:torture-immortal" not in [t.name for t in worker_threads()],
            "the worker thread to exit",
        )
    assert torture_models.Immortal.closes >= 1
    assert "'torture-immortal'" in caplog.text
    assert "ignored GeneratorExit" in caplog.text
    # The warning's record holds the RuntimeError, whose traceback holds the worker's frame and
    # so the generator.  Let go of it here, so that Python's own complaint when it finalises
    # the generator lands in this test (and is ignored by the mark above), not a later one.
    for record in caplog.records:
        record.args = None
    await eventually(lambda: torture_models.Immortal.closes == 2, "Python to finalise it")


# --------------------------------------------------------------------------- odd chunks


@pytest.mark.usefixtures("no_leaked_workers")
async def test_none_chunk_raises_a_clear_assertion_error_like_the_sync_path():
    prompt, run = script("a", None, Endless())
    received: list[Any] = []
    with pytest.raises(AssertionError) as info:
        await asyncio.wait_for(
            collect(llm.get_async_model("probe").prompt(prompt), received), BOUND
        )
    assert "'probe'" in str(info.value) and "None" in str(info.value)
    assert received == ["a"]
    await eventually(lambda: run.finally_runs == 1, "the generator to be closed")
    assert run.closed_on == "llm-async:probe"

    sync_prompt, _ = script("a", None, "b")
    with pytest.raises(AssertionError):
        llm.get_model("probe").prompt(sync_prompt).text()


def _outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", fn())
    except Exception as exc:
        return ("error", (type(exc), str(exc)))


async def _async_outcome(coro: Any) -> tuple[str, Any]:
    try:
        return ("ok", await asyncio.wait_for(coro, BOUND))
    except Exception as exc:
        return ("error", (type(exc), str(exc)))


@pytest.mark.usefixtures("no_leaked_workers")
@pytest.mark.parametrize("odd", [42, 3.5, b"bytes", ["list"], {"key": "value"}])
async def test_non_str_chunks_behave_as_on_the_sync_path(odd):
    steps = ("a", odd, "b")

    def sync_iterate() -> list[Any]:
        return list(llm.get_model("probe").prompt(script(*steps)[0]))

    def sync_text() -> str:
        return llm.get_model("probe").prompt(script(*steps)[0]).text()

    async def async_iterate() -> list[Any]:
        return [c async for c in llm.get_async_model("probe").prompt(script(*steps)[0])]

    async def async_text() -> str:
        return await llm.get_async_model("probe").prompt(script(*steps)[0]).text()

    assert await _async_outcome(async_iterate()) == _outcome(sync_iterate)
    assert await _async_outcome(async_text()) == _outcome(sync_text)


# --------------------------------------------------------------------------- volume


@pytest.mark.serial  # asserts a wall-clock bound
@pytest.mark.usefixtures("no_leaked_workers")
@pytest.mark.timeout(30)
async def test_a_hundred_thousand_tiny_chunks_all_arrive_in_order():
    count = 100_000
    started = time.monotonic()
    received = [chunk async for chunk in llm.get_async_model("torture-count").prompt(str(count))]
    elapsed = time.monotonic() - started
    assert len(received) == count
    assert received == [str(i) for i in range(count)]
    assert elapsed < 15, f"100k chunks took {elapsed:.1f}s"


@pytest.mark.usefixtures("no_leaked_workers")
async def test_one_huge_chunk_arrives_intact():
    huge = "0123456789abcdef" * (50 * 1024 * 1024 // 16)  # 50 MiB
    prompt, run = script(huge, "tail")
    response = llm.get_async_model("probe").prompt(prompt)
    received = [chunk async for chunk in response]
    assert len(received) == 2
    assert received[0] is huge or received[0] == huge
    assert len(received[0]) == 50 * 1024 * 1024
    assert received[1] == "tail"
    assert run.finally_runs == 1


# --------------------------------------------------------------------------- lazy load


@pytest.fixture
def fresh_lazy_load() -> Iterator[None]:
    LazyLoad.loads, LazyLoad._loaded, LazyLoad.gate = 0, None, None
    yield
    if LazyLoad.gate is not None:
        LazyLoad.gate.set()
    LazyLoad.loads, LazyLoad._loaded, LazyLoad.gate = 0, None, None


def _lazy_limiter() -> limits.SlotLimiter:
    return limits.model_limiter(twins.model_key(llm.get_model("lazy-load")), 1)


@pytest.mark.usefixtures("no_leaked_workers", "fresh_lazy_load")
async def test_default_concurrency_makes_an_unlocked_lazy_load_run_once():
    LazyLoad.gate = load_gate = threading.Event()
    limiter = _lazy_limiter()
    prompts = 5
    task = asyncio.gather(
        *(llm.get_async_model("lazy-load").prompt(f"p{i}").text() for i in range(prompts))
    )
    # The first prompt is inside the load, held by the gate; the others wait their turn.
    await eventually(lambda: LazyLoad.loads == 1, "the first load to start")
    await eventually(lambda: limiter.waiting == prompts - 1, "the other prompts to queue")
    assert LazyLoad.loads == 1
    load_gate.set()
    assert await asyncio.wait_for(task, BOUND) == ["loaded"] * prompts
    assert LazyLoad.loads == 1


@pytest.mark.usefixtures("no_leaked_workers", "fresh_lazy_load")
async def test_model_concurrency_four_exposes_the_unlocked_lazy_load_hazard(monkeypatch):
    monkeypatch.setenv("LLM_ASYNC_MODEL_CONCURRENCY", "4")
    LazyLoad.gate = load_gate = threading.Event()
    task = asyncio.gather(
        *(llm.get_async_model("lazy-load").prompt(f"p{i}").text() for i in range(4))
    )
    # All four run at once and all four see nothing loaded: the hazard the default prevents.
    await eventually(lambda: LazyLoad.loads == 4, "four concurrent loads")
    load_gate.set()
    assert await asyncio.wait_for(task, BOUND) == ["loaded"] * 4
    assert LazyLoad.loads == 4


# --------------------------------------------------------------------------- thread-bound


@pytest.fixture
def fresh_thread_bound() -> Iterator[None]:
    ThreadBound.owner = None
    torture_models.HeldThreadBound.hold = None
    torture_models.HeldThreadBound.yielded = threading.Event()
    yield
    if torture_models.HeldThreadBound.hold is not None:
        torture_models.HeldThreadBound.hold.set()
    ThreadBound.owner = None
    torture_models.HeldThreadBound.hold = None


@pytest.mark.usefixtures("fresh_thread_bound")
@pytest.mark.parametrize("affinity", ["any", "model"])
async def test_thread_bound_model_needs_model_affinity_when_streams_overlap(monkeypatch, affinity):
    """Two overlapping streams: on two threads (default) the second fails; with
    ``LLM_ASYNC_AFFINITY=model`` it waits for the model's one thread and works."""
    if affinity == "model":
        monkeypatch.setenv("LLM_ASYNC_AFFINITY", "model")
    monkeypatch.setenv("LLM_ASYNC_MODEL_CONCURRENCY", "2")
    held = torture_models.HeldThreadBound
    held.hold = hold = threading.Event()
    model = "thread-bound-held"
    first = llm.get_async_model(model).prompt("load")
    iterator = first.__aiter__()
    assert await asyncio.wait_for(iterator.__anext__(), BOUND) == "ok"
    await wait_event(held.yielded, "the first stream to hold its thread")
    # The first stream's thread is alive and busy while the second stream starts.
    second = asyncio.ensure_future(llm.get_async_model(model).prompt("again").text())
    if affinity == "any":
        with pytest.raises(RuntimeError, match="no Stream"):
            await asyncio.wait_for(second, BOUND)
        hold.set()
    else:
        for _ in range(20):
            await asyncio.sleep(0)
        assert not second.done(), "the second stream did not wait for the model's thread"
        hold.set()
        assert await asyncio.wait_for(second, BOUND) == "ok"
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(iterator.__anext__(), BOUND)


@pytest.mark.usefixtures("fresh_thread_bound")
async def test_thread_bound_model_works_across_many_streams_with_model_affinity(monkeypatch):
    monkeypatch.setenv("LLM_ASYNC_AFFINITY", "model")
    monkeypatch.setenv("LLM_ASYNC_MODEL_CONCURRENCY", "4")
    for i in range(3):
        response = llm.get_async_model("thread-bound").prompt(f"{i}")
        assert await asyncio.wait_for(response.text(), BOUND) == "ok"
    together = await asyncio.wait_for(
        asyncio.gather(
            *(llm.get_async_model("thread-bound").prompt(f"c{i}").text() for i in range(4))
        ),
        BOUND,
    )
    assert together == ["ok"] * 4
    owners = [t for t in threading.enumerate() if t.ident == ThreadBound.owner]
    assert [t.name for t in owners] == ["llm-async:thread-bound"]


def test_fake_model_modules_are_registered():
    """Guards the plugin registration the other tests rely on."""
    assert llm.plugins.pm.is_registered(torture_models)
    assert llm.plugins.pm.is_registered(fake_models)
    assert llm_all_models_async.is_twin(llm.get_async_model("torture-count"))
