"""Test helpers shared by the adapter's tests: bounded polling and worker-thread counting."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable

WORKER_PREFIX = "llm-async:"


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Bounded polling: return once ``predicate()`` holds, fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        gc.collect()
        threading.Event().wait(0.002)


def worker_threads() -> list[threading.Thread]:
    """The adapter's per-stream worker threads alive now."""
    return [t for t in threading.enumerate() if t.name.startswith(WORKER_PREFIX)]
