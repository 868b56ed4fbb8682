"""Expected failures are strict, match the failure they describe, and are validated; overriding
a standard test needs a reason."""

from __future__ import annotations

from typing import Any

import pytest

# each test runs the suite in a subprocess: seconds alone, minutes on a loaded machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SUITE = """
from conformance import SyncModelConformance, overridden
import sample_models


class TestDeclared(SyncModelConformance):
    model_id = "conformance-good"
    env = {sample_models.KEY_ENV_VAR: "sk-good"}
    expected_failures = {"streaming.order": "believed broken, but it is not"}

    @overridden("replaced to show that a declared override still reports its clause")
    def test_streaming_no_stream(self, llm_conformance):
        assert False, "deliberately broken replacement"


class TestUndeclared(SyncModelConformance):
    model_id = "conformance-single-turn"
    env = {sample_models.KEY_ENV_VAR: "sk-good"}

    def test_streaming_order(self, llm_conformance):
        pass
"""

PYPROJECT = """
[tool.llm-conformance.expected-failures]
"streaming.nonexistent" = "a typo: matches no clause"

[tool.llm-conformance.models."conformance-good".expected-failures."streaming.no_stream"]
reason = "our replacement test fails on purpose"
match = "deliberately broken repl[a-z]+"
"""

ONLY = ("-k", "suite or streaming_order or no_stream")


def test_expected_failures_are_strict_and_checked(run_suite: Any) -> None:
    run = run_suite(SUITE, *ONLY, pyproject=PYPROJECT)
    declared = run.clauses("conformance-good")
    assert declared["streaming.no_stream"]["outcome"] == "xfailed", run.explain("conformance-good")
    assert "our replacement test fails on purpose" in declared["streaming.no_stream"]["reason"]
    assert "pyproject.toml" in declared["streaming.no_stream"]["reason"]
    assert declared["streaming.order"]["outcome"] == "xpassed"
    assert "believed broken, but it is not" in declared["streaming.order"]["reason"]
    assert declared["suite.expectations"]["outcome"] == "error"
    assert "'streaming.nonexistent' is not a clause id" in declared["suite.expectations"]["reason"]
    assert declared["suite.overrides"]["outcome"] == "passed"

    undeclared = run.clauses("conformance-single-turn")
    assert undeclared["suite.overrides"]["outcome"] == "failed"
    assert "test_streaming_order (streaming.order)" in undeclared["suite.overrides"]["reason"]
    assert "@conformance.overridden" in undeclared["suite.overrides"]["reason"]
    assert undeclared["streaming.order"]["outcome"] == "passed"
    assert run.result.ret == 1


def test_an_expected_failure_that_fails_keeps_the_run_green(run_suite: Any) -> None:
    suite = SUITE.split("class TestUndeclared")[0].replace(
        'expected_failures = {"streaming.order": "believed broken, but it is not"}',
        'expected_failures = {"streaming.no_stream": "Deliberately   BROKEN replacement"}',
    )
    run = run_suite(suite, *ONLY)
    clauses = run.clauses("conformance-good")
    assert clauses["streaming.no_stream"]["outcome"] == "xfailed"
    assert clauses["streaming.order"]["outcome"] == "passed"
    assert run.result.ret == 0, run.explain("conformance-good")


def test_expected_failures_file_option(run_suite: Any, pytester: Any) -> None:
    pytester.makefile(
        ".toml", expected='[expected-failures]\n"streaming.no_stream" = "deliberately broken"\n'
    )
    suite = SUITE.split("class TestUndeclared")[0].replace(
        'expected_failures = {"streaming.order": "believed broken, but it is not"}', ""
    )
    run = run_suite(suite, *ONLY, "--llm-expected-failures", "expected.toml")
    clause = run.clauses("conformance-good")["streaming.no_stream"]
    assert clause["outcome"] == "xfailed" and "expected.toml" in clause["reason"]


def test_an_expected_failure_does_not_hide_another_failure(run_suite: Any) -> None:
    """Declaring a clause's failure must not hide a different failure of the same clause."""
    suite = SUITE.split("class TestUndeclared")[0].replace(
        'expected_failures = {"streaming.order": "believed broken, but it is not"}',
        'expected_failures = {"streaming.no_stream": {"reason": "the backend times out", '
        '"match": "TimeoutError"}}',
    )
    run = run_suite(suite, *ONLY)
    clause = run.clauses("conformance-good")["streaming.no_stream"]
    assert clause["outcome"] == "failed", run.explain("conformance-good")
    assert "not with the failure expected by TestDeclared.expected_failures" in clause["reason"]
    assert "/TimeoutError/" in clause["reason"]
    assert "deliberately broken replacement" in clause["reason"]
    assert run.result.ret == 1
