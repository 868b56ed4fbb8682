"""Concurrency limits: per-model slots, the global thread cap, FIFO queueing and queue timeouts.

Everything is observed through limiter state (``waiting``, ``in_use``) and the scripts'
``started`` events, never through timing.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import llm
import pytest
import torture_models
from click.testing import CliRunner
from fake_models import Call, Script, Wait, script
from helpers import eventually, wait_event, worker_threads

import llm_all_models_async
from llm_all_models_async import limits, settings, twins

torture_models.register()

pytestmark = pytest.mark.usefixtures("no_leaked_workers", "idle_limiters")

BOUND = 10.0


def limiter_of(model_id: str) -> limits.SlotLimiter:
    """The per-model limiter the adapter uses for ``model_id``."""
    return limits.model_limiter(twins.model_key(llm.get_model(model_id)), 1)


@pytest.fixture
def idle_limiters() -> Iterator[None]:
    """Every test starts and must end with no slot held and nobody waiting."""

    def idle() -> bool:
        watched = [limits.global_threads, limiter_of("probe"), limiter_of("probe-b")]
        return all(lim.in_use == 0 and lim.waiting == 0 for lim in watched)

    def settle(when: str) -> None:
        deadline = time.monotonic() + BOUND
        while not idle():
            assert time.monotonic() < deadline, f"slots still held {when}"
            threading.Event().wait(0.002)

    settle("before the test (an earlier test's worker is still running)")
    yield
    while _RELEASES:
        _RELEASES.pop().set()
    settle("after the test")


_RELEASES: list[threading.Event] = []


def blocked(
    model: str = "probe", *steps: Any
) -> tuple[asyncio.Future[str], Script, threading.Event]:
    """Start a prompt whose model blocks until the returned event is set."""
    release = threading.Event()
    _RELEASES.append(release)  # set at teardown, so a failing test leaves no model blocked
    prompt, run = script(Wait(release), *(steps or ("done",)))
    task = asyncio.ensure_future(llm.get_async_model(model).prompt(prompt).text())
    return task, run, release


# --------------------------------------------------------------------------- per-model slots


async def test_default_model_concurrency_is_one():
    limiter = limiter_of("probe")
    first, first_run, release = blocked()
    await wait_event(first_run.started, "the first prompt to start")
    second_prompt, second_run = script("second")
    second = asyncio.ensure_future(llm.get_async_model("probe").prompt(second_prompt).text())
    await eventually(lambda: limiter.waiting == 1, "the second prompt to queue")
    assert limiter.in_use == 1
    assert not second_run.started.is_set()
    release.set()
    assert await asyncio.wait_for(second, BOUND) == "second"
    assert await asyncio.wait_for(first, BOUND) == "done"
    assert second_run.started.is_set()


async def test_queued_prompts_start_in_fifo_order():
    limiter = limiter_of("probe")
    first, first_run, release = blocked()
    await wait_event(first_run.started, "the first prompt to start")
    order: list[int] = []
    queued = []
    for i in range(5):
        prompt, _ = script(Call(lambda _response, i=i: order.append(i)), f"{i}")
        queued.append(asyncio.ensure_future(llm.get_async_model("probe").prompt(prompt).text()))
        await eventually(lambda i=i: limiter.waiting == i + 1, f"prompt {i} to queue")
    assert order == []
    release.set()
    results = await asyncio.wait_for(asyncio.gather(first, *queued), BOUND)
    assert results == ["done", "0", "1", "2", "3", "4"]
    assert order == [0, 1, 2, 3, 4]


async def test_cancel_while_queued_takes_no_thread_and_frees_its_place():
    limiter = limiter_of("probe")
    first, first_run, release = blocked()
    await wait_event(first_run.started, "the first prompt to start")
    threads_before = [t.ident for t in worker_threads()]

    cancelled_prompt, cancelled_run = script("should never run")
    cancelled = asyncio.ensure_future(llm.get_async_model("probe").prompt(cancelled_prompt).text())
    await eventually(lambda: limiter.waiting == 1, "the prompt to queue")
    assert [t.ident for t in worker_threads()] == threads_before  # queued: no thread
    next_prompt, next_run = script("next")
    after = asyncio.ensure_future(llm.get_async_model("probe").prompt(next_prompt).text())
    await eventually(lambda: limiter.waiting == 2, "a second prompt to queue behind it")

    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(cancelled, BOUND)
    assert limiter.waiting == 1
    assert [t.ident for t in worker_threads()] == threads_before
    assert limiter.in_use == 1  # still only the running prompt

    release.set()
    assert await asyncio.wait_for(after, BOUND) == "next"
    assert await asyncio.wait_for(first, BOUND) == "done"
    assert next_run.started.is_set()
    assert not cancelled_run.started.is_set()
    assert cancelled_run.threads == []


async def test_model_concurrency_two_runs_two_at_once(monkeypatch):
    monkeypatch.setenv("LLM_ASYNC_MODEL_CONCURRENCY", "2")
    limiter = limiter_of("probe")
    first, first_run, release_first = blocked()
    second, second_run, release_second = blocked()
    await wait_event(first_run.started, "the first prompt to start")
    await wait_event(second_run.started, "the second prompt to start")
    # Both are inside the model, both blocked: two ran at once.  A third must wait.
    assert not first_run.finished.is_set() and not second_run.finished.is_set()
    third, third_run, release_third = blocked()
    await eventually(lambda: limiter.waiting == 1, "the third prompt to queue")
    assert limiter.in_use == 2
    assert not third_run.started.is_set()
    release_first.set()
    await wait_event(third_run.started, "the third prompt to take the freed slot")
    release_second.set()
    release_third.set()
    assert await asyncio.wait_for(asyncio.gather(first, second, third), BOUND) == ["done"] * 3


async def test_max_threads_one_serialises_two_different_models(monkeypatch):
    monkeypatch.setenv("LLM_ASYNC_MAX_THREADS", "1")
    first, first_run, release = blocked("probe")
    await wait_event(first_run.started, "the probe prompt to start")
    other_prompt, other_run = script("other model")
    other = asyncio.ensure_future(llm.get_async_model("probe-b").prompt(other_prompt).text())
    await eventually(lambda: limits.global_threads.waiting == 1, "probe-b to wait for a thread")
    # probe-b got its own model slot; only the global thread cap holds it back.
    assert limiter_of("probe-b").in_use == 1
    assert not other_run.started.is_set()
    assert [t.name for t in worker_threads()].count("llm-async:probe-b") == 0
    release.set()
    assert await asyncio.wait_for(other, BOUND) == "other model"
    assert await asyncio.wait_for(first, BOUND) == "done"
    assert other_run.threads == ["llm-async:probe-b"]


# --------------------------------------------------------------------------- queue timeout


async def test_queue_timeout_raises_and_leaves_no_slot_held(monkeypatch):
    monkeypatch.setenv("LLM_ASYNC_QUEUE_TIMEOUT", "0.1")
    limiter = limiter_of("probe")
    first, first_run, release = blocked()
    await wait_event(first_run.started, "the first prompt to start")
    late_prompt, late_run = script("late")
    started = time.monotonic()
    with pytest.raises(llm_all_models_async.QueueTimeoutError) as info:
        await asyncio.wait_for(llm.get_async_model("probe").prompt(late_prompt).text(), BOUND)
    assert time.monotonic() - started >= 0.1
    error = info.value
    assert isinstance(error, TimeoutError)
    assert (error.model_id, error.setting, error.limit) == ("probe", "LLM_ASYNC_QUEUE_TIMEOUT", 0.1)
    message = str(error)
    assert "'probe'" in message and "LLM_ASYNC_QUEUE_TIMEOUT" in message and "0.1s" in message
    assert limiter.waiting == 0
    assert limiter.in_use == 1  # only the running prompt
    assert not late_run.started.is_set()
    release.set()
    assert await asyncio.wait_for(first, BOUND) == "done"
    await eventually(lambda: limiter.in_use == 0, "the running prompt's slot to be released")
    assert limits.global_threads.in_use == 0
    # The slot really is free: the next prompt runs at once.
    prompt, _ = script("free again")
    assert await asyncio.wait_for(llm.get_async_model("probe").prompt(prompt).text(), BOUND) == (
        "free again"
    )


async def test_queue_timeout_on_the_thread_cap_releases_the_model_slot(monkeypatch):
    monkeypatch.setenv("LLM_ASYNC_QUEUE_TIMEOUT", "0.1")
    monkeypatch.setenv("LLM_ASYNC_MAX_THREADS", "1")
    first, first_run, release = blocked("probe")
    await wait_event(first_run.started, "the probe prompt to start")
    prompt, run = script("never")
    with pytest.raises(llm_all_models_async.QueueTimeoutError) as info:
        await asyncio.wait_for(llm.get_async_model("probe-b").prompt(prompt).text(), BOUND)
    assert info.value.model_id == "probe-b"
    assert limiter_of("probe-b").in_use == 0  # the model slot it had taken was given back
    assert limits.global_threads.waiting == 0
    assert not run.started.is_set()
    release.set()
    assert await asyncio.wait_for(first, BOUND) == "done"


# --------------------------------------------------------------------------- settings file


async def _two_at_once_or_queued() -> bool:
    """Start two blocked probe prompts; True if both run at once, False if one queued."""
    limiter = limiter_of("probe")
    first, first_run, release_first = blocked()
    second, second_run, release_second = blocked()
    try:
        await wait_event(first_run.started, "the first prompt to start")
        await eventually(
            lambda: second_run.started.is_set() or limiter.waiting == 1,
            "the second prompt to start or queue",
        )
        return second_run.started.is_set()
    finally:
        release_first.set()
        release_second.set()
        await asyncio.wait_for(asyncio.gather(first, second), BOUND)


async def test_per_model_override_set_through_the_cli_applies():
    from llm.cli import cli

    assert await _two_at_once_or_queued() is False  # default: one at a time
    result = CliRunner().invoke(cli, ["async", "set", "probe", "model_concurrency", "2"])
    assert result.exit_code == 0, result.output
    stored = json.loads(settings.settings_path().read_text())
    assert stored["models"]["probe"]["model_concurrency"] == 2
    assert await _two_at_once_or_queued() is True


async def test_per_model_override_from_the_file_loses_to_the_environment(monkeypatch):
    settings.write_overrides({"probe": {"model_concurrency": 2}})
    assert await _two_at_once_or_queued() is True
    monkeypatch.setenv("LLM_ASYNC_MODEL_CONCURRENCY", "1")
    assert await _two_at_once_or_queued() is False


async def test_two_lookups_of_one_model_share_one_limiter():
    one = llm.get_async_model("probe")
    two = llm.get_async_model("probe")
    assert one is not two and one.sync_model is not two.sync_model
    limiter = limiter_of("probe")
    release = threading.Event()
    _RELEASES.append(release)
    first_prompt, first_run = script(Wait(release), "one")
    second_prompt, second_run = script("two")
    first = asyncio.ensure_future(one.prompt(first_prompt).text())
    await wait_event(first_run.started, "the first prompt to start")
    second = asyncio.ensure_future(two.prompt(second_prompt).text())
    await eventually(lambda: limiter.waiting == 1, "the other twin's prompt to queue")
    assert not second_run.started.is_set()
    release.set()
    assert await asyncio.wait_for(asyncio.gather(first, second), BOUND) == ["one", "two"]


async def test_raising_model_concurrency_admits_a_queued_prompt():
    limiter = limiter_of("probe")
    first, first_run, release_first = blocked()
    second, second_run, release_second = blocked()
    third = None
    try:
        await wait_event(first_run.started, "the first prompt to start")
        await eventually(lambda: limiter.waiting == 1, "the second prompt to queue")
        settings.write_overrides({"probe": {"model_concurrency": 2}})
        third, _, release_third = blocked()  # resolves the new limit while one prompt runs
        release_third.set()
        await eventually(lambda: limiter.limit == 2, "the new limit to be seen")
        # One prompt runs, the limit is two: the prompt at the head of the line may start.
        # Nothing else frees a slot: only the raised limit can start it.
        await eventually(lambda: second_run.started.is_set(), "the queued prompt to start")
        assert not first_run.finished.is_set()  # ... while the first one still runs
    finally:
        release_first.set()
        release_second.set()
        await asyncio.wait_for(asyncio.gather(*filter(None, (first, second, third))), BOUND)


# --------------------------------------------------------------------------- SlotLimiter


async def test_slot_limiter_try_acquire_serves_the_line_first():
    """The no-wait path takes a free slot; a raised limit goes to the prompt in line first."""
    limiter = limits.SlotLimiter("unit", 1)
    assert limiter.try_acquire() is True
    assert limiter.try_acquire() is False  # full
    waiter = asyncio.ensure_future(limiter.acquire())
    await eventually(lambda: limiter.waiting == 1, "the waiter to queue")
    assert limiter.try_acquire(2) is False  # the raised limit admits the waiter, not us
    await asyncio.wait_for(waiter, BOUND)
    assert (limiter.in_use, limiter.waiting) == (2, 0)
    limiter.release()
    limiter.release()
    assert limiter.in_use == 0


async def test_slot_limiter_release_from_another_thread_wakes_a_waiter():
    limiter = limits.SlotLimiter("unit", 1)
    await asyncio.wait_for(limiter.acquire(), BOUND)
    waiter = asyncio.ensure_future(limiter.acquire())
    await eventually(lambda: limiter.waiting == 1, "the waiter to queue")
    released_on: list[str] = []

    def release() -> None:
        released_on.append(threading.current_thread().name)
        limiter.release()

    thread = threading.Thread(target=release, name="releaser")
    thread.start()
    await asyncio.wait_for(waiter, BOUND)
    await asyncio.to_thread(thread.join, BOUND)
    assert released_on == ["releaser"]
    assert (limiter.in_use, limiter.waiting) == (1, 0)
    limiter.release()
    assert limiter.in_use == 0


async def test_slot_limiter_waiter_cancelled_as_it_is_granted_passes_the_slot_on():
    limiter = limits.SlotLimiter("unit", 1)
    await limiter.acquire()
    first = asyncio.ensure_future(limiter.acquire())
    second = asyncio.ensure_future(limiter.acquire())
    await eventually(lambda: limiter.waiting == 2, "two waiters")
    limiter.release()  # grants ``first``: its wake-up is scheduled, not yet run
    assert limiter.waiting == 1
    first.cancel()  # ... and it gives up before it runs
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(first, BOUND)
    await asyncio.wait_for(second, BOUND)  # the slot went on to the next in line
    assert (limiter.in_use, limiter.waiting) == (1, 0)
    limiter.release()
    assert limiter.in_use == 0


async def test_slot_limiter_waiter_cancelled_after_its_grant_landed_passes_the_slot_on():
    limiter = limits.SlotLimiter("unit", 1)
    await limiter.acquire()
    first = asyncio.ensure_future(limiter.acquire())
    second = asyncio.ensure_future(limiter.acquire())
    await eventually(lambda: limiter.waiting == 2, "two waiters")
    limiter.release()
    await asyncio.sleep(0)  # the grant callback runs and resolves first's future ...
    assert not first.done()  # ... but the task itself has not resumed yet
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(first, BOUND)
    await asyncio.wait_for(second, BOUND)
    assert (limiter.in_use, limiter.waiting) == (1, 0)
    limiter.release()
    assert limiter.in_use == 0


async def test_slot_limiter_cancelled_waiter_leaves_the_line_and_order_is_kept():
    limiter = limits.SlotLimiter("unit", 1)
    await limiter.acquire()
    order: list[int] = []

    async def take(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    tasks = []
    for i in range(4):
        tasks.append(asyncio.ensure_future(take(i)))
        await eventually(lambda i=i: limiter.waiting == i + 1, f"waiter {i}")
    tasks[1].cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(tasks[1], BOUND)
    assert limiter.waiting == 3
    for expected in ([0], [0, 2], [0, 2, 3]):
        limiter.release()
        await eventually(lambda expected=expected: order == expected, f"order {expected}")
    limiter.release()
    assert (limiter.in_use, limiter.waiting) == (0, 0)


async def test_slot_limiter_serves_waiters_on_another_event_loop():
    limiter = limits.SlotLimiter("unit", 1)
    await limiter.acquire()
    granted = threading.Event()
    queued = threading.Event()

    def other_loop() -> None:
        async def main() -> None:
            task = asyncio.ensure_future(limiter.acquire())
            while limiter.waiting == 0:
                await asyncio.sleep(0.001)
            queued.set()
            await asyncio.wait_for(task, BOUND)
            granted.set()
            limiter.release()

        asyncio.run(main())

    thread = threading.Thread(target=other_loop)
    thread.start()
    await wait_event(queued, "the other loop's waiter to queue")
    assert not granted.is_set()
    limiter.release()  # from this loop's thread
    await wait_event(granted, "the other loop's waiter to be granted")
    await asyncio.to_thread(thread.join, BOUND)
    assert (limiter.in_use, limiter.waiting) == (0, 0)


async def test_slot_limiter_raising_the_limit_admits_the_head_of_the_line():
    limiter = limits.SlotLimiter("unit", 1)
    await limiter.acquire(1)
    head = asyncio.ensure_future(limiter.acquire(1))
    await eventually(lambda: limiter.waiting == 1, "the first waiter")
    newer = asyncio.ensure_future(limiter.acquire(2))
    try:
        await eventually(lambda: head.done(), "the head of the line to get the new slot")
        assert limiter.in_use == 2
        assert not newer.done()
    finally:
        for task in (head, newer):
            task.cancel()
        await asyncio.gather(head, newer, return_exceptions=True)
