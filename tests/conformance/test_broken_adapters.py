"""Adapter defects every clause used to let through are each caught by a clause that names
the broken promise, and caught fast (a bounded wait of seconds, not a clause timeout)."""

from __future__ import annotations

from typing import Any

import pytest

# each test runs the suite in a subprocess: seconds alone, minutes on a loaded machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SUITE = """
from conformance import SyncModelConformance
import sample_models


class TestGood(SyncModelConformance):
    model_id = "conformance-good"
    env = {sample_models.KEY_ENV_VAR: "sk-good"}
"""

# defect -> (-k selection, {clause: words its failure must contain}, clauses that still pass)
CASES: dict[str, tuple[str, dict[str, list[str]], set[str]]] = {
    "close_on_loop_thread": (
        "cancellation_at_yield or cancellation_task_cancel",
        {"cancellation.at_yield": ["closed on thread 'MainThread'", "not on its worker thread"]},
        # Stopped while the model is inside next(), the defect cannot close: still passes.
        {"cancellation.task_cancel"},
    ),
    "no_contextvars": (
        "worker_contextvars",
        {"worker.contextvars": ["copy of the caller's contextvars context"]},
        set(),
    ),
    "lifo": (
        "worker_fifo",
        {"worker.fifo": ["in the order [3, 2, 1]", "not served first come, first served"]},
        set(),
    ),
    "ignore_buffer": (
        "worker_buffer",
        {"worker.buffer": ["LLM_ASYNC_BUFFER=4", "does not wait for buffer room"]},
        set(),
    ),
    "drop_resolved_model": (
        "logs_record",
        {"logs.record": ["resolved_model: sync 'conformance-good-2026-01', twin None"]},
        set(),
    ),
    "leak_slot_on_error": (
        "worker_slot_release",
        {"worker.slot_release": ["before its first chunk", "slot was never released"]},
        set(),
    ),
}


@pytest.mark.parametrize("defect", sorted(CASES))
def test_defect_is_caught_by_its_clause(run_suite: Any, defect: str) -> None:
    selection, caught, passing = CASES[defect]
    conftest = f"import defects\ndefects.apply({defect!r})\n"
    run = run_suite(SUITE, "-k", selection, conftest=conftest)
    model = "conformance-good"
    assert run.with_outcome(model, "failed") == set(caught), run.explain(model)
    for clause_id, words in caught.items():
        reason = run.reason(model, clause_id)
        assert all(word in reason for word in words), f"{words} not all in {reason!r}"
        assert "Timeout" not in reason, reason  # the clause's own bound, not pytest-timeout
    assert run.with_outcome(model, "passed") >= passing, run.explain(model)
