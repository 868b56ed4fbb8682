"""A well-behaved model passes every clause that applies to it; the rest skip with a reason."""

from __future__ import annotations

from typing import Any

import pytest

from conformance import features
from conformance.catalog import CLAUSES

# each test runs the whole suite in a subprocess: 40 s alone, minutes on a loaded machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SUITE = """
from conformance import SyncModelConformance
import sample_models


class TestGood(SyncModelConformance):
    model_id = "conformance-good"
    env = {sample_models.KEY_ENV_VAR: "sk-good"}
    failing_prompt = sample_models.FAIL_PROMPT
    tool_prompt = sample_models.TOOL_PROMPT
    options = {"repeat": 2}
    invalid_options = {"repeat": 0}


class TestSingleTurn(TestGood):
    model_id = "conformance-single-turn"
"""

VERDICTS = """
from conformance import SyncModelConformance


class TestSampling(SyncModelConformance):
    model_id = "conformance-sampling"


class TestFreshId(SyncModelConformance):
    model_id = "conformance-fresh-id"


class TestRequiredOption(SyncModelConformance):
    model_id = "conformance-required-option"
    prompt_options = {"voice": "calm"}


class TestRequiredOptionAgain(TestRequiredOption):
    pass
"""

# Clauses that cannot apply to these models, and the words their skip reason must contain.
THREAD_ONLY_SKIPS = {
    clause_id: "--llm-isolation process"
    for clause_id in CLAUSES
    if clause_id.startswith("isolation.")
}
# Thread-bridge promises with no counterpart in a worker process.
PROCESS_ONLY_SKIPS = {
    "worker.contextvars": "context variables do not reach",
}
EXPECTED_SKIPS: dict[str, dict[str, str]] = {
    "conformance-good": {
        "differential.native": "no native async model",
        "conversation.rejected": "supports_conversation=True",
        **THREAD_ONLY_SKIPS,
    },
    "conformance-single-turn": {
        "differential.native": "no native async model",
        "conversation.turns": "supports_conversation=False",
        **THREAD_ONLY_SKIPS,
    },
}


NEEDS_LLM_036 = {
    "cancellation.aclose": "has no AsyncResponse.astream_events()",
    "conversation.rejected": "has no supports_conversation",
}


def test_good_models_pass_every_applicable_clause(run_suite: Any) -> None:
    if not features.has_astream_events():  # llm < 0.36
        for skips in EXPECTED_SKIPS.values():
            skips.update(NEEDS_LLM_036)
    run = run_suite(SUITE)
    for model_id, skips in EXPECTED_SKIPS.items():
        clauses = run.clauses(model_id)
        assert set(clauses) == set(CLAUSES), run.explain(model_id)
        assert run.with_outcome(model_id, "failed", "error", "xpassed") == set(), run.explain(
            model_id
        )
        assert run.with_outcome(model_id, "skipped") == set(skips), run.explain(model_id)
        for clause_id, words in skips.items():
            assert words in run.reason(model_id, clause_id)
    assert run.result.ret == 0
    report = run.reports["conformance-good"]
    assert report["schema"] == "llm-conformance-report/1"
    assert report["adapter_active"] is True
    assert report["summary"]["passed"] == len(CLAUSES) - len(EXPECTED_SKIPS["conformance-good"])
    run.result.stdout.fnmatch_lines(
        ["*llm conformance: conformance-good*", "*streaming.incremental*PASS*"]
    )


def test_verdicts_on_sampling_fresh_ids_and_required_options(
    run_suite: Any, pytester: pytest.Pytester
) -> None:
    selection = "differential_output or concurrency_same_results or options_defaults"
    run = run_suite(VERDICTS, "-k", selection)
    assert run.result.ret == 0, "\n".join(run.result.outlines[-40:])
    sampling = run.reason("conformance-sampling", "differential.output")
    assert "a sampling model (temperature=0.7)" in sampling
    assert "compared on shape" in sampling
    same = run.reason("conformance-sampling", "concurrency.same_results")
    assert "each got exactly what its execute() yielded" in same
    # A fresh id in the response JSON does not make an HTTP-like model nondeterministic.
    assert "identical" in run.reason("conformance-fresh-id", "differential.output")
    assert "rejected alike: ValidationError" in run.reason(
        "conformance-required-option", "options.defaults"
    )
    # Two classes for one model id: one report each.
    names = sorted(path.name for path in pytester.path.glob("report-*.json"))
    assert "report-conformance-required-option-TestRequiredOption.json" in names
    assert "report-conformance-required-option-TestRequiredOptionAgain.json" in names


def test_good_models_pass_every_applicable_clause_in_process_isolation(run_suite: Any) -> None:
    """The same models in worker processes: every clause that applies passes there too."""
    run = run_suite(SUITE, "--llm-isolation", "process")
    for model_id, skips in EXPECTED_SKIPS.items():
        expected = {c: words for c, words in skips.items() if c not in THREAD_ONLY_SKIPS}
        expected.update(PROCESS_ONLY_SKIPS)
        if not features.has_astream_events():  # llm < 0.36
            expected.update(NEEDS_LLM_036)
        assert run.reports[model_id]["isolation"] == "process"
        assert run.with_outcome(model_id, "failed", "error", "xpassed") == set(), run.explain(
            model_id
        )
        assert run.with_outcome(model_id, "skipped") == set(expected), run.explain(model_id)
    assert run.result.ret == 0
