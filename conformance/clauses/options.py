"""Options clauses: valid values reach execute(), invalid ones fail alike, defaults are defaults."""

from __future__ import annotations

from typing import Any

import pytest

from ..context import Context
from ..instrument import Plan
from ..marks import clause
from ..samples import NO_SUCH_OPTION, derive_valid_options


def _dump(options: Any) -> Any:
    dump = getattr(options, "model_dump", None) or getattr(options, "dict", None)
    return dump() if dump else options


def _construction_error(model: Any, prompt: str, options: dict[str, Any]) -> BaseException | None:
    try:
        model.prompt(prompt, **options)
    except Exception as error:
        return error
    return None


class OptionsClauses:
    """options.*: llm's option validation and what execute() receives."""

    @clause("options.valid")
    def test_options_valid(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        fields = ctx.caps.option_fields()
        chosen = ctx.samples.options
        if chosen is None:
            if not fields:
                pytest.skip("the model declares no options (its Options class has no fields)")
            chosen = derive_valid_options(fields)
            if not chosen:
                pytest.skip(
                    f"the model's options ({', '.join(sorted(fields))}) have no simple default "
                    "to try; set options = {...} (valid values) on the test class (or "
                    "samples.options in the matrix cell) to run it"
                )
        sync_options_class = type(ctx.sync()).Options
        merged = {**ctx.samples.prompt_options, **chosen}
        try:
            expected = _dump(sync_options_class(**merged))
        except Exception as error:
            pytest.fail(
                f"the sample options {merged!r} are invalid for the sync model itself: "
                f"{error}; fix options/prompt_options"
            )
        ctx.use(Plan())
        result = ctx.twin_run(options=chosen)
        assert result.error is None, (
            f"the twin failed with options the sync model accepts ({merged!r}): "
            f"{type(result.error).__name__}: {result.error}"
        )
        record = ctx.records(1)[0]
        received = record.args["prompt"].options
        assert isinstance(received, sync_options_class), (
            f"execute() received options of type {type(received).__qualname__}, not the sync "
            f"model's {sync_options_class.__qualname__}"
        )
        assert _dump(received) == expected, (
            f"execute() received options {_dump(received)!r}, expected {expected!r}"
        )
        ctx.note(f"options {merged!r} reached execute()")

    @clause("options.invalid")
    def test_options_invalid(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        cases = [{NO_SUCH_OPTION: 1}]
        if ctx.samples.invalid_options:
            cases.insert(0, dict(ctx.samples.invalid_options))
        sync, twin = ctx.sync(), ctx.twin()
        ctx.use(Plan())
        problems = []
        for options in cases:
            expected = _construction_error(sync, ctx.samples.prompt, options)
            actual = _construction_error(twin, ctx.samples.prompt, options)
            if expected is None:
                problems.append(f"{options!r}: the sync model accepts it; fix invalid_options")
                continue
            if actual is None:
                problems.append(
                    f"{options!r}: the sync model rejects it ({type(expected).__name__}) but "
                    "the twin accepts it"
                )
            elif type(actual) is not type(expected) or str(actual) != str(expected):
                problems.append(
                    f"{options!r}: sync raises {type(expected).__name__}: {expected}; twin "
                    f"raises {type(actual).__name__}: {actual}"
                )
        assert not ctx.instrument.records, "execute() ran although the options were invalid"
        assert not problems, "invalid options behave differently on the twin: " + " | ".join(
            problems
        )
        ctx.note(f"{len(cases)} invalid option set(s) rejected alike")

    @clause("options.defaults")
    def test_options_defaults(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        sync_options_class = type(ctx.sync()).Options
        ctx.use(Plan(synthetic=("ok ",)))
        sync_error = _construction_error(ctx.sync(), ctx.samples.prompt, {})
        twin = ctx.twin()

        async def main() -> BaseException | None:
            try:
                response = twin.prompt(ctx.samples.prompt)
            except Exception as error:
                return error
            await response.text()
            return None

        ctx.use(Plan(synthetic=("ok ",)))
        twin_error = ctx.loop(main)
        if sync_error is not None:
            # Required options: the sync model refuses a prompt without them; so must the twin.
            assert twin_error is not None, (
                f"without options the sync model raises {type(sync_error).__name__}: "
                f"{sync_error}, but the twin runs the prompt"
            )
            assert type(twin_error) is type(sync_error) and str(twin_error) == str(sync_error), (
                f"without options: sync raises {type(sync_error).__name__}: {sync_error}; twin "
                f"raises {type(twin_error).__name__}: {twin_error}"
            )
            assert not ctx.instrument.records, "execute() ran although the options were invalid"
            ctx.note(
                f"a prompt without options is rejected alike: {type(sync_error).__name__} "
                "(the Options class has required fields)"
            )
            return
        assert twin_error is None, (
            f"without options the sync model runs, the twin raises "
            f"{type(twin_error).__name__}: {twin_error}"
        )
        record = ctx.records(1)[0]
        received = record.args["prompt"].options
        assert isinstance(received, sync_options_class), (
            f"execute() received options of type {type(received).__qualname__}, not the sync "
            f"model's {sync_options_class.__qualname__}"
        )
        defaults = _dump(sync_options_class())
        assert _dump(received) == defaults, (
            f"without options execute() received {_dump(received)!r}, not the defaults {defaults!r}"
        )
        ctx.note(f"execute() received the default options {defaults!r}")
