"""Bounded waiting: polling with a deadline, and event loops run with an outer bound."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
POLL = 0.002

# How long the model's own work may take before the part a clause judges begins: its first
# chunk (some plugins load their weights in every execute(), seconds on a busy machine) or
# the rest of a reply once released.  Bounds on what the adapter does stay short.
MODEL_BOUND = 120.0


def wait_until(predicate: Callable[[], bool], timeout: float, *, collect: bool = False) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; returns whether it held."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        if collect:
            gc.collect()
        pause.wait(POLL)


async def async_wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """The same on an event loop, without blocking it."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL)
    return True


async def wait_event(event: threading.Event, timeout: float) -> bool:
    """Await a ``threading.Event`` set by another thread, polling so the loop stays free."""
    return await async_wait_until(event.is_set, timeout)


class LoopThread:
    """Runs ``asyncio.run(factory())`` on its own thread so the test can bound how long it takes."""

    def __init__(self, factory: Callable[[], Awaitable[Any]]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.returned = threading.Event()
        self._factory = factory
        self.thread = threading.Thread(target=self._main, name="llm-conformance-loop", daemon=True)

    def _main(self) -> None:
        try:
            self.result = asyncio.run(self._factory())  # type: ignore[arg-type]
        except BaseException as error:  # reported to the test
            self.error = error
        finally:
            self.returned.set()

    def start(self) -> LoopThread:
        self.thread.start()
        return self
