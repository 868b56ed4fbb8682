"""Each torture model fails exactly the clauses it breaks, with a message naming the cause."""

from __future__ import annotations

from typing import Any

import pytest

from conformance import features

# each test runs the suite in a subprocess: seconds alone, minutes on a loaded machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SUITE = """
from conformance import SyncModelConformance
import sample_models


class TestTortureType(SyncModelConformance):
    model_id = "torture-type"
    failing_prompt = sample_models.FAIL_PROMPT


class TestTortureIgnoreClose(SyncModelConformance):
    model_id = "torture-ignore-close"


class TestTortureReorder(SyncModelConformance):
    model_id = "torture-reorder"


class TestTortureStdout(SyncModelConformance):
    model_id = "torture-stdout"
    adapter_settings = {"model_concurrency": 2}


class TestTortureEnv(SyncModelConformance):
    model_id = "torture-env"


class TestTortureStateful(SyncModelConformance):
    model_id = "torture-stateful"
    failing_prompt = sample_models.FAIL_PROMPT


class TestTortureSeedChain(SyncModelConformance):
    model_id = "torture-seed-chain"


class TestTortureExit(SyncModelConformance):
    model_id = "torture-exit"
"""

CANCELLATION = {  # a fresh set per import; trimmed for old llm below
    "cancellation.task_cancel",
    "cancellation.at_yield",
    "cancellation.wait_for",
    "cancellation.aclose",
    "cancellation.abandoned",
    "cancellation.loop_shutdown",
}

# model id -> (the clauses it must fail, words every one of their messages must contain)
EXPECTED: dict[str, tuple[set[str], list[str]]] = {
    "torture-type": ({"errors.model_raised"}, ["StreamBroken", "RuntimeError", "lost its type"]),
    "torture-ignore-close": (CANCELLATION, ["GeneratorExit", "did not close cleanly"]),
    # A reordered stream changes the text too, so the differential clause names it as well.
    "torture-reorder": (
        {"streaming.order", "differential.output"},
        ["'QUICK '", "depends on the thread"],
    ),
    # Seen while the overlapping runs are held mid-stream: no race decides the verdict.
    "torture-stdout": (
        {"concurrency.stdio", "process.state"},
        ["fd 1 (stdout)", "/dev/null"],
    ),
    "torture-env": (
        {"process.state"},
        [
            "while it ran in thread mode",
            "os.environ changed: CONFORMANCE_TORTURE_ENV",
            "logger <root>: level WARNING -> CRITICAL",
            "LLM_ASYNC_ISOLATION=process",
        ],
    ),
    "torture-stateful": (
        {"errors.recovery"},
        ["carries state between prompts", "on llm's sync path alone", "not the adapter"],
    ),
    # Fresh instances agree, one instance does not: state, named as such, not the adapter.
    "torture-seed-chain": (
        {"errors.recovery", "concurrency.same_results"},
        [
            "carries state between prompts",
            "one model instance answers the same prompt differently the second time",
            "not the adapter",
        ],
    ),
    "torture-exit": (
        {"process.exit"},
        ["killed by SIGABRT after answering", "on llm's sync path alone", "too"],
    ),
}

# Extra words for one clause of a model.
DETAIL = {
    ("torture-stdout", "concurrency.stdio"): ["while 2 executes overlapped", "os.dup2"],
    ("torture-stdout", "process.state"): ["LLM_ASYNC_ISOLATION=process"],
}


@pytest.mark.parametrize("model_id", sorted(EXPECTED))
def test_each_torture_model_fails_exactly_its_clauses(run_suite: Any, model_id: str) -> None:
    if not features.has_astream_events():  # llm < 0.36: that clause skips
        EXPECTED["torture-ignore-close"][0].discard("cancellation.aclose")
    classes = SUITE.split("\n\n\nclass ")
    mine = [c for c in classes[1:] if f'model_id = "{model_id}"' in c]
    run = run_suite(classes[0] + "\n\n\nclass " + mine[0])
    clauses, words = EXPECTED[model_id]
    failed = run.with_outcome(model_id, "failed", "error")
    assert failed == clauses, (
        f"{model_id}: failed {sorted(failed)}, expected {sorted(clauses)}\n" + run.explain(model_id)
    )
    problems = []
    for clause_id in clauses:
        reason = run.reason(model_id, clause_id)
        wanted = words + DETAIL.get((model_id, clause_id), [])
        missing = [w for w in wanted if w not in reason]
        if missing:
            problems.append(f"{model_id} {clause_id}: {missing} not in {reason!r}")
    assert not problems, "\n\n".join(problems)
    assert run.result.ret == 1


def test_in_process_mode_the_same_model_leaves_the_parent_untouched(
    run_suite: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_ASYNC_ISOLATION", "process")
    classes = SUITE.split("\n\n\nclass ")
    env_class = next(c for c in classes if 'model_id = "torture-env"' in c)
    run = run_suite(classes[0] + "\n\n\nclass " + env_class, "-k", "process_state")
    clause = run.clauses("torture-env")["process.state"]
    assert clause["outcome"] == "passed", run.explain("torture-env")
    assert "(process mode)" in clause["reason"]
