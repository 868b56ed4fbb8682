"""The suite in either isolation: --llm-isolation, the class attribute, the isolation clauses."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.catalog import CLAUSES

# each test runs the suite in a subprocess: seconds alone, minutes on a loaded machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ISOLATION_CLAUSES = {cid for cid in CLAUSES if cid.startswith("isolation.")}

SUITE = """
from conformance import SyncModelConformance
import sample_models


class TestGood(SyncModelConformance):
    model_id = "conformance-good"
    env = {sample_models.KEY_ENV_VAR: "sk-good"}
"""


def test_isolation_clauses_skip_in_thread_mode_saying_how(run_suite: Any) -> None:
    run = run_suite(SUITE, "-k", "isolation")
    clauses = run.clauses("conformance-good")
    assert set(clauses) == ISOLATION_CLAUSES
    for clause_id, clause in clauses.items():
        assert clause["outcome"] == "skipped", (clause_id, clause)
        assert "--llm-isolation process" in clause["reason"], clause["reason"]
    assert run.reports["conformance-good"]["isolation"] == "thread"


def test_process_mode_runs_the_clauses_in_worker_processes(run_suite: Any) -> None:
    """The instrument follows execute() into the worker: the same clauses pass there."""
    run = run_suite(
        SUITE,
        "--llm-isolation",
        "process",
        "-k",
        "isolation or streaming or cancellation_task or options or errors_injected",
    )
    report = run.reports["conformance-good"]
    assert report["isolation"] == "process"
    passed = run.with_outcome("conformance-good", "passed")
    expected = ISOLATION_CLAUSES | {
        "streaming.incremental",
        "streaming.order",
        "streaming.no_stream",
        "cancellation.task_cancel",
        "options.defaults",
        "errors.injected",
    }
    assert expected <= passed, run.explain("conformance-good")
    # the notes name a worker pid: the records came from the worker, not from this process
    assert "worker" in run.reason("conformance-good", "isolation.warm_reuse")
    assert "@pid" in run.reason("conformance-good", "cancellation.task_cancel")


def test_the_class_attribute_wins_and_a_bad_value_is_named(run_suite: Any) -> None:
    suite = SUITE.replace(
        'env = {sample_models.KEY_ENV_VAR: "sk-good"}',
        'env = {sample_models.KEY_ENV_VAR: "sk-good"}\n    isolation = "process"',
    ) + (
        "\n\nclass TestBad(SyncModelConformance):\n"
        '    model_id = "conformance-single-turn"\n'
        '    isolation = "fork"\n'
    )
    run = run_suite(suite, "--llm-isolation", "thread", "-k", "warm_reuse or hook_twin")
    assert run.reports["conformance-good"]["isolation"] == "process"
    assert run.clauses("conformance-good")["isolation.warm_reuse"]["outcome"] == "passed"
    bad = run.clauses("conformance-single-turn")["hook.twin"]
    assert bad["outcome"] == "error"  # the class cannot be set up
    assert "TestBad.isolation is 'fork'; expected one of thread, process" in bad["reason"]


def test_an_unknown_isolation_option_is_refused(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--pyargs", "conformance", "--llm-isolation", "fork")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--llm-isolation: invalid choice: 'fork'*"])


def test_a_failed_isolation_clause_carries_its_fix_hint() -> None:
    from types import SimpleNamespace

    from conformance.catalog import FIX_HINTS
    from conformance.outcomes import ClauseResult, apply

    result = ClauseResult("isolation.no_orphans")
    crash = SimpleNamespace(message="AssertionError: worker 12 was still running")
    report = SimpleNamespace(
        when="call", passed=False, failed=True, skipped=False, duration=0.1,
        longrepr=SimpleNamespace(reprcrash=crash),
    )  # fmt: skip
    apply(result, report)
    assert result.outcome == "failed"
    assert result.reason.startswith("worker 12 was still running")
    assert result.reason.endswith(f"(fix: {FIX_HINTS['isolation.no_orphans']})")
    assert set(FIX_HINTS) == ISOLATION_CLAUSES
