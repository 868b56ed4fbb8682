"""One daemon thread that runs every delayed action of the process machinery.

``kill_after`` checks and idle-worker retirement are scheduled once per prompt; starting a
``threading.Timer`` for each would cost a thread start (about a millisecond on a busy machine)
on the event loop's path.  Here scheduling is a heap push, and a cancelled action is merely
skipped when its time comes.  Actions must be quick and must not raise (errors are logged).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("llm_all_models_async")


class Scheduled:
    """A handle on one scheduled action."""

    __slots__ = ("action", "cancelled")

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


_lock = threading.Condition()
_heap: list[tuple[float, int, Scheduled]] = []
_order = itertools.count()
_thread: threading.Thread | None = None


def schedule(delay: float, action: Callable[[], None]) -> Scheduled:
    """Run ``action`` on the timer thread ``delay`` seconds from now (unless cancelled)."""
    global _thread
    handle = Scheduled(action)
    with _lock:
        heapq.heappush(_heap, (time.monotonic() + delay, next(_order), handle))
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="llm-async-timers", daemon=True)
            _thread.start()
        _lock.notify()
    return handle


def _run() -> None:
    while True:
        with _lock:
            while True:
                if _heap and _heap[0][2].cancelled:
                    heapq.heappop(_heap)
                    continue
                now = time.monotonic()
                if _heap and _heap[0][0] <= now:
                    handle = heapq.heappop(_heap)[2]
                    break
                _lock.wait(None if not _heap else _heap[0][0] - now)
        try:
            handle.action()
        except Exception:
            logger.exception("llm-async: a scheduled action failed")
