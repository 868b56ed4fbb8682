"""isolation=process: streaming, flow control, cancellation, kill, crashes, timeouts, reuse."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import llm
import process_models
import pytest
from process_helpers import alive, eventually, stop_all_workers
from process_models import read_record, script_prompt

import llm_all_models_async as lama
from llm_all_models_async.process import pool
from llm_all_models_async.process.wire import RemoteTraceback

process_models.register()


@pytest.fixture(autouse=True)
def process_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LLM_ASYNC_ISOLATION", "process")
    yield
    stop_all_workers()


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "record.txt"


async def collect(response: llm.AsyncResponse) -> tuple[list[str], BaseException | None]:
    chunks: list[str] = []
    try:
        async for chunk in response:
            chunks.append(chunk)
    except Exception as error:
        return chunks, error
    return chunks, None


def script_model() -> llm.AsyncModel:
    return llm.get_async_model("proc-script")


async def test_chunks_arrive_in_order_from_another_process(record: Path) -> None:
    steps = [["pid"], *[["yield", f"{i} "] for i in range(200)]]
    chunks, error = await collect(script_model().prompt(script_prompt(record, *steps)))
    assert error is None
    worker_pid = int(chunks[0])
    assert worker_pid != os.getpid()
    assert chunks[1:] == [f"{i} " for i in range(200)]


async def test_options_and_usage_round_trip() -> None:
    model = llm.get_async_model("options-model")
    assert await model.prompt("hi", length=4, word="w").text() == "w w w w "
    response = llm.get_async_model("response-api").prompt("x")
    assert await response.text() == "plain"
    usage = await response.usage()
    assert (usage.input, usage.output, usage.details) == (3, 5, {"cached": 1})
    assert response.response_json == {"raw": "x"}
    assert response.resolved_model == "response-api-resolved"


async def test_credits_bound_read_ahead(record: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A consumer that stops reading pauses the model after LLM_ASYNC_BUFFER chunks."""
    monkeypatch.setenv("LLM_ASYNC_BUFFER", "4")
    monkeypatch.setenv("LLM_ASYNC_STALL_TIMEOUT", "0.3")
    response = script_model().prompt(script_prompt(record, ["endless", "x"]))
    iterator = response.__aiter__()
    assert await iterator.__anext__() == "x"
    # The worker waits for credit, stalls, closes the generator: its count is final then.
    eventually(lambda: any(line.startswith("finally") for line in read_record(record)))
    assert "finally pulled=4" in read_record(record)
    with pytest.raises(lama.StallTimeoutError):
        while True:
            await iterator.__anext__()


async def test_cancel_closes_the_generator_in_the_worker(record: Path) -> None:
    response = script_model().prompt(script_prompt(record, ["pid"], ["endless", "x"]))
    seen: list[str] = []

    async def consume() -> None:
        async for chunk in response:
            seen.append(chunk)

    task = asyncio.create_task(consume())
    await asyncio.to_thread(eventually, lambda: len(seen) >= 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    worker_pid = int(seen[0])
    await asyncio.to_thread(
        eventually, lambda: any(line.startswith("finally") for line in read_record(record))
    )
    lines = read_record(record)
    assert any(line.startswith(f"GeneratorExit pid={worker_pid}") for line in lines)
    assert alive(worker_pid)  # closed cleanly: no kill needed, the worker stays warm


async def test_cancelled_turns_true_in_the_worker(record: Path) -> None:
    response = script_model().prompt(script_prompt(record, ["yield", "a"], ["until_cancelled"]))
    task = asyncio.create_task(collect(response))
    # Cancel once the model is inside its polling loop, not while it is still at the yield
    # (there the stop would close the generator before it ever polls).
    await asyncio.to_thread(eventually, lambda: "polling cancelled" in read_record(record))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(eventually, lambda: "saw cancelled" in read_record(record))


async def test_kill_after_a_model_stuck_in_c(record: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_ASYNC_KILL_AFTER", "0.5")
    response = script_model().prompt(script_prompt(record, ["pid"], ["block"]))
    task = asyncio.create_task(collect(response))
    await asyncio.to_thread(eventually, lambda: "blocking" in read_record(record))
    worker_pid = int(read_record(record)[0].split("=")[1])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(eventually, lambda: not alive(worker_pid), 15.0)
    # The slot is free again (model_concurrency 1) and a fresh worker serves the next prompt.
    chunks, error = await collect(script_model().prompt(script_prompt(record, ["pid"])))
    assert error is None and int(chunks[0]) != worker_pid


@pytest.mark.parametrize(
    ("step", "how", "tail"),
    [
        (["exit", 3], "exit code 3", "dying now"),
        (["segv"], "killed by SIGSEGV", "about to segfault"),
    ],
)
async def test_crash_delivers_chunks_then_worker_crashed_error(
    record: Path, step: list[object], how: str, tail: str
) -> None:
    steps = [["pid"], ["yield", "a"], ["yield", "b"], step]
    chunks, error = await collect(script_model().prompt(script_prompt(record, *steps)))
    assert chunks[1:] == ["a", "b"]
    assert isinstance(error, lama.WorkerCrashedError)
    assert isinstance(error, llm.ModelError)
    assert "'proc-script'" in str(error) and how in str(error) and tail in str(error)
    assert error.pid == int(chunks[0])
    again, error = await collect(script_model().prompt(script_prompt(record, ["pid"])))
    assert error is None and int(again[0]) != int(chunks[0])


async def test_exceptions_keep_their_type_and_the_worker_traceback(record: Path) -> None:
    chunks, error = await collect(
        script_model().prompt(script_prompt(record, ["yield", "a"], ["raise", "boom"]))
    )
    assert chunks == ["a"]
    assert isinstance(error, process_models.ProcessModelError)
    assert error.code == 7 and error.args == ("boom", 7)
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "_deep_failure" in str(error.__cause__)
    _, error = await collect(script_model().prompt(script_prompt(record, ["raise_unpicklable"])))
    assert isinstance(error, lama.WorkerError)
    assert error.remote_type == "process_models.Unpicklable" and "left/right" in str(error)
    assert "Unpicklable" in str(error.__cause__)


async def test_the_worker_is_warm_and_loads_once() -> None:
    model = llm.get_async_model("proc-warm")
    first = json.loads(await model.prompt("one").text())
    second = json.loads(await llm.get_async_model("proc-warm").prompt("two").text())
    assert first["pid"] == second["pid"] != os.getpid()
    assert first["loads"] == second["loads"] == 1


async def test_model_concurrency_maps_to_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_ASYNC_MODEL_CONCURRENCY", "2")
    go = tmp_path / "go"
    records = [tmp_path / "r1", tmp_path / "r2"]
    responses = [
        script_model().prompt(script_prompt(r, ["pid"], ["wait_file", str(go)], ["yield", "done"]))
        for r in records
    ]
    tasks = [asyncio.create_task(collect(r)) for r in responses]
    # Both are inside the model at once: neither can finish before the go file exists.
    await asyncio.to_thread(eventually, lambda: all(read_record(r) for r in records))
    go.touch()
    results = [await t for t in tasks]
    pids = {int(chunks[0]) for chunks, _ in results}
    assert len(pids) == 2
    assert all(chunks[1:] == ["done"] and error is None for chunks, error in results)


async def test_first_chunk_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_ASYNC_FIRST_CHUNK_TIMEOUT", "0.3")
    await llm.get_async_model("proc-warm").prompt("warm up").text()  # start cost excluded
    never = tmp_path / "never"
    response = script_model().prompt(
        script_prompt(tmp_path / "r", ["wait_file", str(never)], ["yield", "late"])
    )
    with pytest.raises(lama.FirstChunkTimeoutError):
        await response.text()


async def test_idle_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await script_model().prompt(script_prompt(tmp_path / "w", ["yield", "warm"])).text()
    monkeypatch.setenv("LLM_ASYNC_IDLE_TIMEOUT", "0.3")
    response = script_model().prompt(
        script_prompt(
            tmp_path / "r", ["yield", "a"], ["wait_file", str(tmp_path / "never")], ["yield", "b"]
        )
    )
    chunks, error = await collect(response)
    assert chunks == ["a"] and isinstance(error, lama.IdleTimeoutError)


async def test_response_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await script_model().prompt(script_prompt(tmp_path / "w", ["yield", "warm"])).text()
    monkeypatch.setenv("LLM_ASYNC_TIMEOUT", "1.5")  # from here on the worker is warm
    response = script_model().prompt(
        script_prompt(tmp_path / "r", ["yield", "a"], ["wait_file", str(tmp_path / "never")])
    )
    chunks, error = await collect(response)
    assert chunks == ["a"] and isinstance(error, lama.ResponseTimeoutError)


async def test_response_timeout_holds_while_chunks_are_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consumer slower than the model finds chunks buffered when it asks; once the response
    timeout has passed it must get the timeout, not the buffered chunks."""
    await script_model().prompt(script_prompt(tmp_path / "w", ["yield", "warm"])).text()
    limit = 0.5
    monkeypatch.setenv("LLM_ASYNC_TIMEOUT", str(limit))
    gate = tmp_path / "gate"
    response = script_model().prompt(
        script_prompt(
            tmp_path / "r", ["yield", "first"], ["wait_file", str(gate)], ["endless", "x"]
        )
    )
    iterator = response.__aiter__()
    started = time.monotonic()
    assert await iterator.__anext__() == "first"  # a batch of one: the model waits at the gate
    (worker,) = pool.all_workers()
    job = worker._sink
    assert job is not None
    gate.touch()
    await asyncio.to_thread(eventually, lambda: len(job.channel.items) >= 4, what="chunks buffered")
    await asyncio.to_thread(eventually, lambda: time.monotonic() > started + limit)
    with pytest.raises(lama.ResponseTimeoutError):
        await iterator.__anext__()


async def test_queue_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_ASYNC_QUEUE_TIMEOUT", "0.3")
    go = tmp_path / "go"
    first = asyncio.create_task(
        collect(
            script_model().prompt(
                script_prompt(tmp_path / "r1", ["wait_file", str(go)], ["yield", "first"])
            )
        )
    )
    await asyncio.to_thread(eventually, lambda: read_record(tmp_path / "r1") != [])
    with pytest.raises(lama.QueueTimeoutError):
        await script_model().prompt(script_prompt(tmp_path / "r2", ["yield", "x"])).text()
    go.touch()
    assert await first == (["first"], None)


async def test_idle_worker_exits(record: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_ASYNC_WORKER_IDLE_TIMEOUT", "0.3")
    chunks, _ = await collect(script_model().prompt(script_prompt(record, ["pid"])))
    worker_pid = int(chunks[0])
    await asyncio.to_thread(eventually, lambda: not alive(worker_pid))
    again, _ = await collect(script_model().prompt(script_prompt(record, ["pid"])))
    assert int(again[0]) != worker_pid


async def test_an_abandoned_response_closes_the_generator_in_the_worker(record: Path) -> None:
    response = script_model().prompt(script_prompt(record, ["yield", "a"], ["endless", "x"]))
    iterator = response.__aiter__()
    assert await iterator.__anext__() == "a"
    del iterator, response  # dropped mid-stream, never closed
    await asyncio.to_thread(
        eventually,
        lambda: any(line.startswith("GeneratorExit") for line in read_record(record)),
    )


async def test_a_prompt_cancelled_during_a_cold_start_leaves_the_worker_warm(
    record: Path,
) -> None:
    task = asyncio.create_task(collect(script_model().prompt(script_prompt(record, ["pid"]))))
    await asyncio.sleep(0)  # let it reach the worker start: a scheduling point, not a delay
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert read_record(record) == []  # the cancelled prompt never ran
    eventually(lambda: len(pool.all_workers()) == 1 and pool.all_workers()[0].ready.done())
    (starting,) = pool.all_workers()
    chunks, error = await collect(script_model().prompt(script_prompt(record, ["pid"])))
    assert error is None and int(chunks[0]) == starting.pid


@pytest.mark.parametrize("attempt", range(3))
async def test_a_prompt_handed_to_a_worker_that_just_died_runs_on_another(
    record: Path, attempt: int
) -> None:
    """Killed while idle and taken before the parent noticed: the prompt never reached the
    model, so it goes to a fresh worker instead of failing (whichever side wins the race)."""
    chunks, _ = await collect(script_model().prompt(script_prompt(record, ["pid"])))
    dead_pid = int(chunks[0])
    os.kill(dead_pid, signal.SIGKILL)
    chunks, error = await collect(script_model().prompt(script_prompt(record, ["pid"])))
    assert error is None
    assert int(chunks[0]) != dead_pid
