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


SLOW_LOAD_SUITE = """
from conformance import SyncModelConformance


class TestSlowLoad(SyncModelConformance):
    model_id = "conformance-slow-load"
    env = {env!r}
"""


def test_timeouts_accept_the_kill_of_a_model_still_inside_its_own_work(run_suite: Any) -> None:
    """llm-gpt4all loads its weights before its first chunk, for longer than the clause's
    bound: after the stop the adapter may leave it LLM_ASYNC_KILL_AFTER seconds before it
    kills the worker, and that kill is the contract kept, not a generator left running."""
    # LLM_ASYNC_KILL_AFTER past the clause's 5 s bound, short of the model's 10 s load
    suite = SLOW_LOAD_SUITE.format(env={"LLM_ASYNC_KILL_AFTER": "6"})
    run = run_suite(suite, "--llm-isolation", "process", "-k", "timeouts_first_chunk")
    model = "conformance-slow-load"
    assert run.with_outcome(model, "passed") == {"timeouts.first_chunk"}, run.explain(model)
    reason = run.reason(model, "timeouts.first_chunk")
    assert "ended while the model was inside its own work, 0 chunk(s) in" in reason, reason
    assert "LLM_ASYNC_KILL_AFTER=6.0" in reason, reason


def test_a_worker_killed_at_a_yield_it_should_have_closed_fails(run_suite: Any) -> None:
    """The kill is no excuse when the generator waited at a yield: a worker that drops the
    STOP leaves it there (LLM_ASYNC_BUFFER=1: no credit left) until the kill.  Both the
    timeout clause and the stop at a yield see it."""
    suite = SUITE.replace(
        'env = {sample_models.KEY_ENV_VAR: "sk-good"}',
        'env = {sample_models.KEY_ENV_VAR: "sk-good", "LLM_ASYNC_BUFFER": "1", '
        '"LLM_ASYNC_KILL_AFTER": "1"}',
    )
    conftest = "import defects\ndefects.apply_in_workers('worker_ignores_stop')\n"
    selection = "timeouts_first_chunk or cancellation_at_yield"
    run = run_suite(suite, "--llm-isolation", "process", "-k", selection, conftest=conftest)
    model = "conformance-good"
    caught = {"timeouts.first_chunk", "cancellation.at_yield"}
    assert run.with_outcome(model, "failed") == caught, run.explain(model)
    reason = run.reason(model, "timeouts.first_chunk")
    assert "never closed the generator although it was suspended at a yield" in reason, reason
    reason = run.reason(model, "cancellation.at_yield")
    assert "the sync generator was never closed: it ended by lost" in reason, reason


def test_at_yield_runs_in_process_mode_and_closes_in_the_worker(run_suite: Any) -> None:
    run = run_suite(SUITE, "--llm-isolation", "process", "-k", "cancellation_at_yield")
    model = "conformance-good"
    assert run.with_outcome(model, "passed") == {"cancellation.at_yield"}, run.explain(model)
    assert "generator closed on MainThread@pid" in run.reason(model, "cancellation.at_yield")


def test_a_model_slow_to_its_first_chunk_is_judged_from_that_chunk(run_suite: Any) -> None:
    """Weights loaded in every execute() make a first chunk take seconds on a busy machine
    (llm-gpt4all, 3 December): the clauses that judge delivery, a stall, overlapping prompts
    or what a cancel leaves behind give the model its own time to a first chunk and to whole
    replies, and judge the adapter from there."""
    # a load past the clauses' 10 s and 5 s bounds on the adapter
    suite = SLOW_LOAD_SUITE.format(env={"CONFORMANCE_SLOW_LOAD_SECONDS": "11"})
    selection = "streaming_incremental or timeouts_stall or concurrency_limit or hygiene_threads"
    run = run_suite(suite, "-k", selection)
    model = "conformance-slow-load"
    clauses = {"streaming.incremental", "timeouts.stall", "concurrency.limit", "hygiene.threads"}
    assert run.with_outcome(model, "passed") == clauses, run.explain(model)
