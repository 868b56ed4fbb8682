"""Error clauses: exceptions keep type, message and traceback; a failure poisons nothing."""

from __future__ import annotations

import traceback
import uuid
from typing import Any

import pytest

from ..context import Context
from ..instrument import Plan
from ..marks import clause


class InjectedModelError(Exception):
    """Raised mid-stream by the instrumentation, standing in for a model's own error."""


class InjectedBaseException(BaseException):
    """A BaseException that is neither KeyboardInterrupt nor SystemExit, raised mid-stream."""


async def _consume_catching(
    response: Any, kinds: tuple[type[BaseException], ...]
) -> dict[str, Any]:
    chunks: list[Any] = []
    try:
        async for chunk in response:
            chunks.append(chunk)
    except kinds as error:
        return {"chunks": chunks, "error": error}
    return {"chunks": chunks, "error": None}


class ErrorClauses:
    """errors.*: what a failing model looks like through the twin."""

    @clause("errors.injected")
    def test_errors_injected(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        twin = ctx.twin()
        for kind in (InjectedModelError, InjectedBaseException):
            message = f"conformance: injected {kind.__name__} {uuid.uuid4().hex[:8]}"
            raised: list[BaseException] = []

            def make(
                kind: type[BaseException] = kind,
                message: str = message,
                raised: list[BaseException] = raised,
            ) -> BaseException:
                raised.append(kind(message))
                return raised[-1]

            ctx.use(Plan(raise_after=1, pad_to=2, error=make))

            async def main() -> dict[str, Any]:
                response = twin.prompt(ctx.samples.prompt, **ctx.prompt_kwargs())
                return await _consume_catching(response, (BaseException,))

            outcome = ctx.loop(main)
            error = outcome["error"]
            assert raised, "the sync execute() was never run"
            if error is None:
                pytest.fail(
                    f"the response completed successfully with {len(outcome['chunks'])} "
                    f"chunk(s) although execute() raised {kind.__name__}"
                    + (
                        " (a BaseException): a truncated answer passed as complete"
                        if kind is InjectedBaseException
                        else ""
                    )
                )
            assert type(error) is kind and str(error) == message, (
                f"execute() raised {kind.__name__}({message!r}); the consumer got "
                f"{type(error).__name__}({error!s})"
            )
            frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
            assert "_run" in frames, (
                f"the traceback of {kind.__name__} lost the model's frames: {frames}"
            )
            assert len(outcome["chunks"]) >= 1, "the chunk before the error was lost"
        ctx.note("Exception and BaseException kept type, message and traceback")

    @clause("errors.model_raised")
    def test_errors_model_raised(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        failing = ctx.samples.failing_prompt
        if failing is None:
            pytest.skip(
                "no failing_prompt sample: set failing_prompt = '...' (a prompt that makes the "
                "model raise) on the test class (or samples.failing_prompt in the cell) to run it"
            )
        ctx.use(Plan())
        expected = ctx.sync_run(failing).error
        if expected is None:
            pytest.fail(f"the sync model did not fail on failing_prompt {failing!r}")
        ctx.use(Plan())
        actual = ctx.twin_run(failing).error
        assert actual is not None, (
            f"the sync model raises {type(expected).__name__}: {expected}, the twin succeeds"
        )
        assert type(actual) is type(expected) and str(actual) == str(expected), (
            f"the sync model raises {type(expected).__qualname__}({expected!s}) but the twin "
            f"raises {type(actual).__qualname__}({actual!s}): the exception lost its type or "
            "message on the worker thread"
        )
        ctx.note(f"{type(actual).__name__}: {actual}")

    @clause("errors.recovery")
    def test_errors_recovery(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        twin = ctx.twin()
        ctx.use(Plan())
        ctx.loop(lambda: ctx.async_run(model=twin))  # settles state an earlier clause left
        before = ctx.loop(lambda: ctx.async_run(model=twin))
        assert before.error is None, f"the sample prompt fails: {before.error!r}"
        failing = ctx.samples.failing_prompt
        if failing is None:
            ctx.use(Plan(raise_after=0, error=lambda: InjectedModelError("conformance failure")))
        else:
            ctx.use(Plan())
        failed = ctx.loop(lambda: ctx.async_run(failing, model=twin))
        assert failed.error is not None, "the failing prompt did not fail"
        ctx.use(Plan())
        after = ctx.loop(lambda: ctx.async_run(model=twin))
        assert after.error is None, (
            f"after a failed prompt the next one fails too: {type(after.error).__name__}: "
            f"{after.error}"
        )
        if ctx.deterministic():
            if after.said() != before.said():
                state = ctx.state_note()
                pytest.fail(
                    f"after a failed prompt the twin answers {after.text!r}, before it it "
                    f"answered {before.text!r}"
                    + (
                        state
                        or " -- the sync model alone answers the same after a failed or "
                        "cancelled prompt, so the twin (the adapter) carries the failure over"
                    ),
                    pytrace=False,
                )
            ctx.note(f"{type(failed.error).__name__} did not affect the next prompt")
        else:
            assert after.text, "after a failed prompt the next one returned no text"
            ctx.note(
                f"{type(failed.error).__name__} did not stop the next prompt; "
                + ctx.nondeterminism()
            )
