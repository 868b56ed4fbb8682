"""The parent's side of one prompt in a worker (``process.server._Job``), without a worker."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from llm_all_models_async.process import protocol
from llm_all_models_async.process.server import _Job

pytestmark = pytest.mark.timeout(30)


class RecordingWorker:
    """Stands in for a WorkerProcess: keeps every frame the job sends."""

    pid = 4711

    def __init__(self) -> None:
        self.frames: list[tuple[str, int, Any]] = []
        self.sent = threading.Event()

    def send(self, kind: str, number: int, payload: Any = None) -> None:
        self.frames.append((kind, number, payload))
        self.sent.set()


def test_a_tool_calls_reply_carries_the_number_of_the_prompt_that_asked() -> None:
    """A fast worker's tool call can reach the reader thread before the dispatcher has
    recorded the prompt's number on the job; a reply numbered 0 was dropped by the worker
    handle, and the worker waited for it for ever (seen once as a 60 s test timeout)."""
    view = SimpleNamespace(execute_tool_call=lambda call: f"result of {call}")
    config = SimpleNamespace(kill_after=None, buffer=8, stall_timeout=None)
    request = SimpleNamespace(model_id="m", response=view, config=config)
    worker = RecordingWorker()
    job = _Job(request, worker, release=lambda: None)  # type: ignore[arg-type]
    assert job.number == 0  # the dispatcher has not recorded it yet

    job.on_tool_call(7, "call-1")

    assert worker.sent.wait(10), "no reply was sent"
    assert worker.frames == [(protocol.TOOL_RESULT, 7, (True, "result of call-1"))]
