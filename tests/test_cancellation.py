"""Cancellation: every way a consumer stops releases it at once and closes the generator.

After a stop the sync generator must see ``GeneratorExit`` at its ``yield`` on its own worker
thread, after at most the chunk in flight, and nothing more may be pulled.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
import sys
import textwrap
import threading
from importlib.metadata import version

import llm
import pytest
from fake_models import Endless, UntilCancelled, Wait, script
from helpers import wait_until, worker_threads

import llm_all_models_async

LLM_VERSION = tuple(int(p) for p in version("llm").split(".")[:2])

pytestmark = pytest.mark.usefixtures("no_leaked_workers")


def _closed_on_worker(run, pulled_before: int) -> None:
    wait_until(lambda: run.finally_runs == 1, what="the generator's finally")
    assert run.generator_exit == 1
    assert run.closed_on == "llm-async:probe"
    assert run.pulled <= pulled_before + 1, "more than the chunk in flight was pulled"


async def _first_chunk_then_block():
    release = threading.Event()
    prompt, run = script("first", Wait(release), "in flight", "never")
    response = llm.get_async_model("probe").prompt(prompt)
    iterator = response.__aiter__()
    assert await iterator.__anext__() == "first"
    return response, iterator, run, release


async def test_task_cancel_releases_the_caller_and_closes_the_generator():
    response, iterator, run, release = await _first_chunk_then_block()
    task = asyncio.ensure_future(iterator.__anext__())
    await asyncio.sleep(0)  # let the task start awaiting (not synchronisation with the worker)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not run.finished.is_set()  # released while the model is still blocked
    pulled = run.pulled
    release.set()
    _closed_on_worker(run, pulled)
    assert "never" not in response._chunks


async def test_wait_for_timeout_releases_the_caller():
    _response, iterator, run, release = await _first_chunk_then_block()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(iterator.__anext__(), 0.05)
    pulled = run.pulled
    release.set()
    _closed_on_worker(run, pulled)


async def test_aclose_closes_the_generator():
    response, _iterator, run, release = await _first_chunk_then_block()
    await response._generator.aclose()
    pulled = run.pulled
    release.set()
    _closed_on_worker(run, pulled)


@pytest.mark.skipif(
    LLM_VERSION < (0, 36),
    reason="astream_events() closes the model's generator on early exit from llm 0.36 "
    "(0.32-0.35 leave it open until the response is dropped); install llm>=0.36 to run",
)
async def test_early_exit_from_astream_events_closes_the_generator():
    prompt, run = script(Endless())
    response = llm.get_async_model("probe").prompt(prompt)
    events = response.astream_events()
    async for _event in events:
        break
    await events.aclose()  # what `async with aclosing(...)` or the loop's finaliser does
    wait_until(lambda: run.finally_runs == 1, what="the generator's finally")
    assert run.closed_on == "llm-async:probe"


async def test_abandoned_response_is_closed_once_dropped():
    prompt, run = script(Endless())
    response = llm.get_async_model("probe").prompt(prompt)
    async for _chunk in response:
        break
    del response
    gc.collect()
    # The async generator's finaliser schedules aclose() on this loop: let it run.
    for _ in range(5):
        await asyncio.sleep(0)
    wait_until(lambda: run.finally_runs == 1, what="the abandoned generator to close")
    assert run.closed_on == "llm-async:probe"


def test_event_loop_shutdown_closes_the_generator():
    prompt, run = script(Endless())
    keep = []

    async def main():
        response = llm.get_async_model("probe").prompt(prompt)
        keep.append(response)
        iterator = response.__aiter__()
        await iterator.__anext__()

    asyncio.run(main())
    wait_until(lambda: run.finally_runs == 1, what="loop shutdown to close the generator")
    assert run.closed_on == "llm-async:probe"


async def test_cancelled_is_visible_to_a_blocking_loop_in_the_model():
    step = UntilCancelled()
    prompt, run = script("first", step)
    response = llm.get_async_model("probe").prompt(prompt)
    iterator = response.__aiter__()
    await iterator.__anext__()
    await asyncio.to_thread(step.checked.wait, 10)
    task = asyncio.ensure_future(iterator.__anext__())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    wait_until(lambda: run.finished.is_set(), what="the model to notice cancelled()")
    assert llm_all_models_async.cancelled() is False  # outside a worker it is always False


async def test_stuck_worker_is_logged(monkeypatch, caplog):
    monkeypatch.setenv("LLM_ASYNC_STUCK_WARNING", "0.05")
    release = threading.Event()
    prompt, run = script("first", Wait(release))
    response = llm.get_async_model("probe").prompt(prompt)
    iterator = response.__aiter__()
    await iterator.__anext__()
    with caplog.at_level(logging.WARNING, logger="llm_all_models_async"):
        await response._generator.aclose()
        wait_until(lambda: "still busy" in caplog.text, what="the stuck-worker warning")
    assert "'probe'" in caplog.text
    release.set()
    wait_until(lambda: run.finally_runs == 1)


async def test_stall_timeout_closes_a_stream_nobody_reads(monkeypatch):
    monkeypatch.setenv("LLM_ASYNC_STALL_TIMEOUT", "0.05")
    monkeypatch.setenv("LLM_ASYNC_BUFFER", "2")
    prompt, run = script(Endless())
    response = llm.get_async_model("probe").prompt(prompt)
    iterator = response.__aiter__()
    await iterator.__anext__()
    wait_until(lambda: run.finally_runs == 1, what="the stall timeout to close the stream")
    assert run.closed_on == "llm-async:probe"
    # Chunks handed over before the stall may still be read; then the error comes.
    with pytest.raises(llm_all_models_async.StallTimeoutError) as info:
        for _ in range(3):
            await iterator.__anext__()
    assert isinstance(info.value, TimeoutError)
    assert "LLM_ASYNC_STALL_TIMEOUT=0.05s" in str(info.value)


async def test_threads_return_to_baseline_after_many_cancelled_streams():
    baseline = len(worker_threads())
    model = llm.get_async_model("probe")
    for _ in range(100):
        prompt, _run = script(Endless())
        response = model.prompt(prompt)
        iterator = response.__aiter__()
        await iterator.__anext__()
        await response._generator.aclose()
    wait_until(lambda: len(worker_threads()) == baseline, what="threads back to baseline")


def test_process_exit_does_not_wait_for_a_stuck_worker(tmp_path):
    code = textwrap.dedent(
        """
        import asyncio, sys, threading
        sys.path.insert(0, sys.argv[1])
        import llm, fake_models
        llm.plugins.pm.register(fake_models, name="fake-models")
        prompt, run = fake_models.script("first", fake_models.Wait(threading.Event(), timeout=3600))

        async def main():
            response = llm.get_async_model("probe").prompt(prompt)
            iterator = response.__aiter__()
            await iterator.__anext__()
            await response._generator.aclose()

        asyncio.run(main())
        print("exiting")
        """
    )
    import os
    from pathlib import Path

    env = {**os.environ, "LLM_USER_PATH": str(tmp_path)}
    tests_dir = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", code, tests_dir],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "exiting" in done.stdout
