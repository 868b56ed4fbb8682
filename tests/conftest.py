"""Shared fixtures: an isolated llm user dir, the fake models plugin, and leak checks."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import llm
import pytest

sys.path.insert(0, str(Path(__file__).parent))
# The repository's matrix tooling (`matrix`, not in the wheel) for test_matrix, test_report and
# tests/fixtures: appended, so the installed suite and adapter still win over the checkout.
sys.path.append(str(Path(__file__).resolve().parents[1]))

import fake_models
from helpers import wait_until, worker_threads

# pytester (the conformance suite's own tests) must be enabled from the top-level conftest.
pytest_plugins = ["pytester"]

if not llm.plugins.pm.is_registered(fake_models):
    llm.plugins.pm.register(fake_models, name="llm-async-fake-models")


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


@pytest.fixture
def no_leaked_workers() -> Iterator[None]:
    """Fail the test if any per-stream worker thread outlives it."""
    before = {t.ident for t in worker_threads()}
    yield
    wait_until(
        lambda: not [t for t in worker_threads() if t.ident not in before],
        what="worker threads to exit",
    )
