"""Test helpers shared by the adapter's tests: bounded polling and worker-thread counting."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable

WORKER_PREFIX = "llm-async:"
BOUND = 10.0  # no single wait in a test may take longer: a hang fails the test, not the run


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Bounded polling: return once ``predicate()`` holds, fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        gc.collect()
        threading.Event().wait(0.002)


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = BOUND) -> None:
    """Bounded polling that keeps the event loop running (unlike the blocking ``wait_until``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.002)


async def wait_event(event: threading.Event, what: str, timeout: float = BOUND) -> None:
    """Await a ``threading.Event`` set by a worker thread, bounded."""
    if not await asyncio.to_thread(event.wait, timeout):
        raise AssertionError(f"timed out waiting for {what}")


def worker_threads() -> list[threading.Thread]:
    """The adapter's per-stream worker threads alive now."""
    return [t for t in threading.enumerate() if t.name.startswith(WORKER_PREFIX)]
