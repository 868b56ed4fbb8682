"""Shared fixtures: an isolated llm user dir, the test models plugin, and leak checks."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import llm
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import models as test_models

if not llm.plugins.pm.is_registered(test_models):
    llm.plugins.pm.register(test_models, name="llm-async-test-models")

WORKER_PREFIX = "llm-async:"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own llm user dir and no LLM_ASYNC_* settings from outside."""
    user_dir = tmp_path / "llm-user"
    user_dir.mkdir()
    monkeypatch.setenv("LLM_USER_PATH", str(user_dir))
    for name in list(os.environ):
        if name.startswith("LLM_ASYNC_"):
            monkeypatch.delenv(name)
    yield user_dir


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Bounded polling: return once ``predicate()`` holds, fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        gc.collect()
        threading.Event().wait(0.002)


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(WORKER_PREFIX)]


@pytest.fixture
def no_leaked_workers() -> Iterator[None]:
    """Fail the test if any per-stream worker thread outlives it."""
    before = {t.ident for t in worker_threads()}
    yield
    wait_until(
        lambda: not [t for t in worker_threads() if t.ident not in before],
        what="worker threads to exit",
    )
