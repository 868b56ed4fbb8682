"""Worker threads are reused while idle, under their model's name, and never left behind."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

from helpers import wait_until

from llm_all_models_async import workers


def _run_and_record(model_id: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    done = threading.Event()

    def job() -> None:
        thread = threading.current_thread()
        seen.update(ident=thread.ident, name=thread.name, daemon=thread.daemon, thread=thread)
        done.set()

    workers.start_thread(model_id, job, lambda: None)
    assert done.wait(10)
    return seen


def test_an_idle_worker_runs_the_next_stream_under_its_model_name(monkeypatch):
    monkeypatch.setattr(workers, "IDLE_SECONDS", 30.0)
    first = _run_and_record("reuse-a")
    assert first["name"] == "llm-async:reuse-a" and first["daemon"]
    wait_until(lambda: first["thread"].name == workers.IDLE_NAME, what="the worker to idle")
    second = _run_and_record("reuse-b")
    assert second["ident"] == first["ident"]
    assert second["name"] == "llm-async:reuse-b" and second["daemon"]


def test_an_idle_worker_exits_after_its_idle_time(monkeypatch):
    monkeypatch.setattr(workers, "IDLE_SECONDS", 0.05)
    seen = _run_and_record("idle-exit")
    wait_until(lambda: not seen["thread"].is_alive(), what="the idle worker to exit")


def test_idle_workers_are_retired_and_a_later_stream_gets_a_new_one(monkeypatch):
    monkeypatch.setattr(workers, "IDLE_SECONDS", 30.0)
    seen = _run_and_record("retire")
    wait_until(lambda: seen["thread"].name == workers.IDLE_NAME, what="the worker to idle")
    workers.retire_idle_threads()
    assert not seen["thread"].is_alive()
    again = _run_and_record("retire")
    assert again["thread"] is not seen["thread"]


CHILD = """
import atexit, threading

def report():  # registered before the adapter is imported, so it runs after the adapter's
    print(sorted(t.name for t in threading.enumerate() if t.name.startswith("llm-async")))

atexit.register(report)
from llm_all_models_async import workers

done = threading.Event()
workers.start_thread("exit-check", done.set, lambda: None)
done.wait(10)
dedicated_done = threading.Event()
workers.dedicated_thread(("exit", "check", "key"), "exit-dedicated").submit(
    dedicated_done.set, lambda: None
)
dedicated_done.wait(10)
"""


def test_no_idle_worker_is_left_at_interpreter_exit():
    """A thread that ran a model may own native per-thread state (MLX): the adapter ends idle
    pooled threads and dedicated threads before the interpreter finalises, instead of
    leaving them to die with it."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


RUNNING_AT_EXIT = """
import asyncio, atexit, sys, threading, time

def report():  # registered before the adapter is imported, so it runs after the adapter's
    names = sorted(t.name for t in threading.enumerate() if t.name.startswith("llm-async"))
    print("threads", names)

atexit.register(report)
from llm_all_models_async import bridge, workers
from llm_all_models_async.deadlines import Deadlines

MODE = sys.argv[1]
workers.EXIT_STOP_SECONDS = 0.5 if MODE == "stuck" else 30.0
never = threading.Event()

def generate():
    try:
        while True:
            if MODE == "stuck":
                never.wait()  # a next() that does not return (a long native call)
            yield "chunk"  # at exit the worker waits for room: the buffer holds 4
    finally:
        print("model finally ran", flush=True)

kept = []

async def main():
    stream = bridge.open_stream(
        "exit-model", generate, capacity=4, deadlines=Deadlines(), started_at=time.monotonic(),
        submit=lambda job, stop: workers.start_thread("exit-model", job, stop),
        on_exit=lambda: None,
    )
    kept.append(stream)  # still referenced, still running when the interpreter exits
    if MODE == "running":
        print("got", (await stream.next_batch())[0], flush=True)

asyncio.run(main())
"""


def _exit_with(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUNNING_AT_EXIT, mode],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_stream_still_running_at_exit_is_stopped_and_its_generator_closed():
    """Left to the interpreter, a daemon worker inside native code (torch) is killed with
    ``pthread_exit`` and the process aborts; the adapter stops the stream and waits for the
    generator to close, so its ``finally`` runs and no worker is left behind."""
    result = _exit_with("running")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == ["got chunk", "model finally ran", "threads []"], result.stdout + result.stderr
    assert "still inside the model" not in result.stderr


def test_exit_waits_a_bounded_time_for_a_model_that_does_not_return():
    result = _exit_with("stuck")
    assert result.returncode == 0, result.stderr
    assert "model finally ran" not in result.stdout
    assert "'exit-model' still inside the model after 0.5s" in result.stderr, result.stderr


def test_no_worker_runs_on_the_default_executor():
    seen = _run_and_record("not-executor")
    assert not seen["name"].startswith(("asyncio_", "ThreadPoolExecutor"))
