"""Helpers for the process-isolation tests: worker clean-up and process liveness."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from helpers import wait_until

from llm_all_models_async.process import pool


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def eventually(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Bounded polling with room for a worker's cold start on a loaded machine."""
    wait_until(predicate, timeout=timeout, what=what)


def stop_all_workers() -> None:
    """Close every worker of this process and wait (bounded) until each has exited."""
    workers = pool.all_workers()
    pool.shutdown()
    for worker in workers:
        wait_until(worker.exited.is_set, timeout=15, what=f"worker {worker.pid} to exit")
