"""Differential clauses: the twin against the sync model, and against a native async model."""

from __future__ import annotations

import pytest

from ..context import Context
from ..instrument import Plan
from ..marks import clause
from ..subject import differences


class DifferentialClauses:
    """differential.*: same prompt, same seed, same result."""

    @clause("differential.output")
    def test_differential_output(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        ctx.use(Plan())
        expected = ctx.reference()
        actual = ctx.twin_run()
        assert actual.error is None, (
            f"the twin failed where the sync model succeeded: {type(actual.error).__name__}: "
            f"{actual.error}"
        )
        if ctx.deterministic():
            found = differences(expected.comparable(), actual.comparable(), ("sync", "twin"))
            if found:
                state = ctx.state_note()
                pytest.fail(
                    "the twin's output differs from the sync model's: "
                    + "; ".join(found)
                    + (
                        state
                        or " (the model says the same on two fresh sync runs and keeps no state "
                        "across prompts, so it depends on the thread it runs on: thread-local "
                        "or main-thread-only state)"
                    ),
                    pytrace=False,
                )
            ctx.note("text, chunks, usage, tool calls, JSON keys and stream events identical")
        else:
            found = differences(expected.shape(), actual.shape(), ("sync", "twin"))
            assert not found, "the twin's output has another shape: " + "; ".join(found)
            ctx.note(ctx.nondeterminism())

    @clause("differential.native")
    def test_differential_native(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        native = ctx.models.native
        if native is None:
            pytest.skip("the plugin ships no native async model to compare with")
        ctx.use(Plan())
        twin_result = ctx.twin_run()
        native_result = ctx.loop(lambda: ctx.async_run(model=native))
        assert native_result.error is None, (
            f"the native async model itself failed: {native_result.error!r}"
        )
        assert twin_result.error is None, f"the twin failed: {twin_result.error!r}"
        if ctx.deterministic():
            found = differences(
                native_result.comparable(), twin_result.comparable(), ("native", "twin")
            )
        else:
            found = differences(native_result.shape(), twin_result.shape(), ("native", "twin"))
        assert not found, "the twin differs from the native async model: " + "; ".join(found)
        ctx.note(f"identical to {type(native).__name__}")
