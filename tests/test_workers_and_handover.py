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

    workers.start_thread(model_id, job)
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
workers.start_thread("exit-check", done.set)
done.wait(10)
"""


def test_no_idle_worker_is_left_at_interpreter_exit():
    """A thread that ran a model may own native per-thread state (MLX): the adapter ends idle
    threads before the interpreter finalises, instead of leaving them to die with it."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_no_worker_runs_on_the_default_executor():
    seen = _run_and_record("not-executor")
    assert not seen["name"].startswith(("asyncio_", "ThreadPoolExecutor"))
