"""Errors keep their identity; each adapter timeout fires as a TimeoutError subclass."""

from __future__ import annotations

import threading
import traceback

import llm
import pytest
from fake_models import Raise, Wait, script
from helpers import wait_until

from llm_all_models_async import (
    AdapterTimeoutError,
    FirstChunkTimeoutError,
    IdleTimeoutError,
    QueueTimeoutError,
    ResponseTimeoutError,
)

pytestmark = pytest.mark.usefixtures("no_leaked_workers")


class PluginError(Exception):
    pass


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad value"),
        PluginError("plugin specific"),
        llm.ModelError("the model failed"),
        llm.NeedsKeyException("no key"),
    ],
)
async def test_exception_type_message_and_traceback_survive(error):
    prompt, run = script("before ", Raise(error), "never")
    response = llm.get_async_model("probe").prompt(prompt)
    received = []
    with pytest.raises(type(error)) as info:
        async for chunk in response:
            received.append(chunk)
    assert received == ["before "]
    assert info.value is error
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "execute" in frames  # the model's own frame, from the worker thread
    assert run.finally_runs == 1


@pytest.mark.parametrize("error_type", [KeyboardInterrupt, SystemExit])
async def test_interrupts_never_become_a_successful_response(error_type):
    prompt, _run = script("partial", Raise(error_type()))
    response = llm.get_async_model("probe").prompt(prompt)
    with pytest.raises(error_type):
        await response.text()
    assert not response._done


async def test_a_failing_prompt_does_not_poison_the_next():
    bad, _ = script("x", Raise(ValueError("boom")))
    with pytest.raises(ValueError, match="boom"):
        await llm.get_async_model("probe").prompt(bad).text()
    good, _ = script("fine")
    assert await llm.get_async_model("probe").prompt(good).text() == "fine"


async def test_needs_key_error_is_the_sync_models():
    with pytest.raises(llm.NeedsKeyException) as twin_error:
        await llm.get_async_model("needs-key").prompt("x").text()
    with pytest.raises(llm.NeedsKeyException) as sync_error:
        llm.get_model("needs-key").prompt("x").text()
    assert str(twin_error.value) == str(sync_error.value)


async def test_keys_resolve_like_the_sync_model(monkeypatch, isolated_env):
    twin = llm.get_async_model("needs-key")
    assert await twin.prompt("x", key="explicit").text() == "key=explicit"
    monkeypatch.setenv("NEEDS_KEY_TEST_KEY", "from-env")
    assert await twin.prompt("x").text() == "key=from-env"
    monkeypatch.delenv("NEEDS_KEY_TEST_KEY")
    (isolated_env / "keys.json").write_text('{"needs-key-service": "stored"}')
    assert await twin.prompt("x").text() == "key=stored"
    twin.key = "set-on-model"
    assert await twin.prompt("x").text() == "key=set-on-model"


def _assert_timeout(error: AdapterTimeoutError, setting: str, limit: str) -> None:
    assert isinstance(error, TimeoutError)
    assert "'probe'" in str(error)
    assert f"{setting}={limit}s" in str(error)
    assert error.model_id == "probe"


async def test_whole_response_timeout(monkeypatch):
    monkeypatch.setenv("LLM_ASYNC_TIMEOUT", "0.1")
    release = threading.Event()
    prompt, run = script("a", Wait(release), "b")
    with pytest.raises(ResponseTimeoutError) as info:
        await llm.get_async_model("probe").prompt(prompt).text()
    _assert_timeout(info.value, "LLM_ASYNC_TIMEOUT", "0.1")
    release.set()
    wait_until(lambda: run.finally_runs == 1)
    assert run.closed_on == "llm-async:probe"


async def test_first_chunk_timeout(monkeypatch):
    monkeypatch.setenv("LLM_ASYNC_FIRST_CHUNK_TIMEOUT", "0.05")
    release = threading.Event()
    prompt, run = script(Wait(release), "late")
    with pytest.raises(FirstChunkTimeoutError) as info:
        await llm.get_async_model("probe").prompt(prompt).text()
    _assert_timeout(info.value, "LLM_ASYNC_FIRST_CHUNK_TIMEOUT", "0.05")
    release.set()
    wait_until(lambda: run.finally_runs == 1)


async def test_first_chunk_timeout_does_not_limit_later_chunks(monkeypatch):
    monkeypatch.setenv("LLM_ASYNC_FIRST_CHUNK_TIMEOUT", "0.05")
    release = threading.Event()
    prompt, _ = script("first", Wait(release), "second")
    response = llm.get_async_model("probe").prompt(prompt)
    iterator = response.__aiter__()
    assert await iterator.__anext__() == "first"
    timer = threading.Timer(0.2, release.set)  # the model stays silent longer than the limit
    timer.start()
    assert await iterator.__anext__() == "second"


async def test_idle_timeout(monkeypatch):
    monkeypatch.setenv("LLM_ASYNC_IDLE_TIMEOUT", "0.05")
    release = threading.Event()
    prompt, run = script("a", Wait(release), "b")
    response = llm.get_async_model("probe").prompt(prompt)
    with pytest.raises(IdleTimeoutError) as info:
        await response.text()
    _assert_timeout(info.value, "LLM_ASYNC_IDLE_TIMEOUT", "0.05")
    assert response._chunks == ["a"]
    release.set()
    wait_until(lambda: run.finally_runs == 1)


async def test_queue_timeout(monkeypatch):
    monkeypatch.setenv("LLM_ASYNC_QUEUE_TIMEOUT", "0.05")
    release = threading.Event()
    busy, _busy_run = script("a", Wait(release))
    first = llm.get_async_model("probe").prompt(busy)
    iterator = first.__aiter__()
    await iterator.__anext__()
    waiting, waiting_run = script("never runs")
    with pytest.raises(QueueTimeoutError) as info:
        await llm.get_async_model("probe").prompt(waiting).text()
    _assert_timeout(info.value, "LLM_ASYNC_QUEUE_TIMEOUT", "0.05")
    assert not waiting_run.started.is_set()
    release.set()
    assert await first.text() == "a"
    again, _ = script("runs")
    assert await llm.get_async_model("probe").prompt(again).text() == "runs"
