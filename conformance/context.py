"""Per-class bench (model, capabilities, samples, instrument) and the per-test clause context."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from . import adapter, capabilities, samples, subject
from .capabilities import Capabilities
from .hermetic import Hermetic
from .instrument import Instrument, Plan, Record
from .outcomes import NOTE_KEY
from .samples import Samples
from .subject import Models, RunResult

RELEASE_BOUND = 10.0


@dataclass
class Bench:
    """Everything one test class shares: built once, torn down with the class."""

    model_id: str | None
    place: Hermetic | None = None
    models: Models | None = None
    caps: Capabilities | None = None
    samples: Samples | None = None
    instrument: Instrument | None = None
    reseed_hook: Callable[[int], None] | None = None
    setup_error: str | None = None
    setup_skip: str | None = None  # the preflight failed (xdist worker): every clause skips
    inactive_reason: str | None = None
    cell: str | None = None
    loop_errors: list[str] = field(default_factory=list)
    isolation: str = "thread"
    _determinism: dict[str, bool] = field(default_factory=dict)
    _verdicts: dict[str, str | None] = field(default_factory=dict)
    _references: dict[Any, RunResult] = field(default_factory=dict)

    def reseed(self) -> None:
        if self.samples is not None and self.samples.seed is not None and self.reseed_hook:
            self.reseed_hook(self.samples.seed)


ISOLATION_ENV = "LLM_ASYNC_ISOLATION"


def isolation_mode(model_id: str) -> str:
    """``thread`` or ``process``: the adapter's setting for the model, else the environment."""
    found = adapter.settings_of(model_id)
    mode = getattr(found, "isolation", None) if found is not None else None
    if mode is None:
        mode = os.environ.get(ISOLATION_ENV, "thread")
    return str(mode).strip().lower() or "thread"


def quiet_loop(into: list[str]) -> None:
    """Make the running loop record stray errors (a task whose exception nobody retrieved,
    an async generator that failed to close) as one line each instead of logging them.

    asyncio logs them with a formatted traceback from the finaliser of the task, at whatever
    moment the garbage collector runs: on CPython 3.11.7 that formatting, nested inside
    pytest's own ``ast.parse`` of a failure, crashes pytest (see ``plugin.py``).  A failing
    clause leaves such tasks behind by design; their errors are the clause's business.
    """

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        detail = f": {type(error).__name__}: {error}" if error else ""
        into.append(str(context.get("message", "")) + detail)

    asyncio.get_running_loop().set_exception_handler(handler)


class Context:
    """What a clause works with: the bench plus per-test helpers."""

    def __init__(
        self, bench: Bench, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.bench = bench
        self.request = request
        self.monkeypatch = monkeypatch
        assert bench.models and bench.caps and bench.samples and bench.instrument
        self.models: Models = bench.models
        self.caps: Capabilities = bench.caps
        self.samples: Samples = bench.samples
        self.instrument: Instrument = bench.instrument
        self.model_id: str = bench.models.model_id

    # -- reporting and skipping ----------------------------------------------------------

    def note(self, text: str) -> None:
        """A line shown as the reason of a passing clause (in the table and the JSON)."""
        self.request.node.user_properties.append((NOTE_KEY, text))

    def require(self, name: str, wanted: Any = True) -> None:
        value = self.caps.values.get(name)
        ok = bool(value) if wanted is True else value == wanted
        if not ok:
            pytest.skip(capabilities.skip_reason(self.caps, name, wanted))

    # -- models --------------------------------------------------------------------------

    def twin(self) -> Any:
        return subject.current_twin(self.models)

    def sync(self) -> Any:
        return subject.fresh_sync(self.models)

    def prompt_kwargs(self, **extra: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.samples.system is not None:
            kwargs["system"] = self.samples.system
        options = dict(self.samples.prompt_options)
        options.update(extra.pop("options", None) or {})
        # Options as keyword arguments: the form every llm version accepts (0.36 adds options=).
        kwargs.update(options)
        kwargs.update(extra)
        return kwargs

    def chain_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``model.chain()``, which takes ``options=`` as a dict."""
        kwargs: dict[str, Any] = {}
        if self.samples.system is not None:
            kwargs["system"] = self.samples.system
        if self.samples.prompt_options:
            kwargs["options"] = dict(self.samples.prompt_options)
        return kwargs

    # -- running -------------------------------------------------------------------------

    def use(self, plan: Plan | None = None) -> Plan:
        return self.instrument.use(plan)

    def loop(self, factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """``asyncio.run(factory())`` on a loop that records, not logs, stray task errors."""

        async def main() -> Any:
            quiet_loop(self.bench.loop_errors)
            return await factory()

        return asyncio.run(main())

    def sync_run(self, prompt: str | None = None, *, model: Any = None, **kwargs: Any) -> RunResult:
        """The prompt on a fresh sync model instance (or on ``model``)."""
        prompt = self.samples.prompt if prompt is None else prompt
        target = model if model is not None else self.sync()
        return subject.run_sync(target, self.bench.reseed, prompt, **self.prompt_kwargs(**kwargs))

    async def async_run(
        self, prompt: str | None = None, *, model: Any = None, **kwargs: Any
    ) -> RunResult:
        prompt = self.samples.prompt if prompt is None else prompt
        target = model if model is not None else self.twin()
        return await subject.run_async(
            target, self.bench.reseed, prompt, **self.prompt_kwargs(**kwargs)
        )

    def twin_run(self, prompt: str | None = None, **kwargs: Any) -> RunResult:
        return self.loop(lambda: self.async_run(prompt, **kwargs))

    def reference(self, prompt: str | None = None, **kwargs: Any) -> RunResult:
        """The sync model's result for a prompt, cached per class."""
        key = (prompt, repr(sorted(kwargs.items())))
        cached = self.bench._references.get(key)
        if cached is None:
            cached = self.bench._references[key] = self.sync_run(prompt, **kwargs)
        if cached.error is not None:
            raise AssertionError(
                f"the sync model itself failed on the sample prompt: "
                f"{type(cached.error).__name__}: {cached.error}; fix the samples "
                "(prompt, prompt_options) or the fixtures"
            )
        return cached

    def deterministic(self, *, reseeded: bool = True) -> bool:
        """Declared, or measured: two runs on fresh sync instances say the same (text and
        chunks; the rest of the response, e.g. its JSON with a fresh id, does not count)."""
        declared = self.caps.values.get("deterministic")
        if declared is not None:
            return bool(declared)
        key = "reseeded" if reseeded else "free"
        if key not in self.bench._determinism:
            saved = self.samples.seed
            try:
                # A settling run first: a model that carries state from an unfinished earlier
                # prompt shows it once, which is not randomness (see carried_state).
                self.sync_run()
                first = self.sync_run()
                if not reseeded and saved is not None:
                    # Does the output depend on the random generator the suite reseeds?  Ask
                    # with two other fixed seeds rather than none: the verdict is then the same
                    # on every run, not a coin toss on whether two free draws coincide.
                    self.samples.seed = saved + 1
                    second = self.sync_run()
                    self.samples.seed = saved + 2
                    third = self.sync_run()
                    same = first.said() == second.said() == third.said()
                else:
                    if not reseeded:
                        self.samples.seed = None
                    second = self.sync_run()
                    same = first.said() == second.said()
            finally:
                self.samples.seed = saved
            self.bench._determinism[key] = first.error is None and same
        return self.bench._determinism[key]

    def nondeterminism(self) -> str:
        """Why the model is compared on shape, for the clause's message."""
        sampling = samples.sampling_options(self.caps.option_fields(), self.samples.prompt_options)
        if sampling:
            return (
                f"a sampling model ({sampling}): two sync runs with the same seed say different "
                "things, so it is compared on shape"
            )
        return (
            "two sync runs with the same seed say different things (a random generator the "
            "suite does not reseed, or state carried from one prompt to the next), so it is "
            "compared on shape"
        )

    def carried_state(self) -> str | None:
        """Whether one sync model instance alone answers differently on a second prompt, or
        after a cancelled or failed one.

        Asked when an exact comparison fails, to tell a model that carries state between
        prompts (a shared cache, a half-finished generation) apart from an adapter defect.
        Runs on llm's sync path only; None when the answer does not change.
        """
        if "state" in self.bench._verdicts:
            return self.bench._verdicts["state"]
        found: str | None = None
        self.instrument.use(Plan())
        model = self.sync()  # one instance, as a twin keeps one sync model for its prompts
        before = self.sync_run(model=model)
        again = self.sync_run(model=model)
        if before.error is None and again.said() != before.said():
            found = (
                f"one model instance answers the same prompt differently the second time "
                f"({before.text!r}, then {again.text!r}): each answer depends on the prompts "
                "before it"
            )
        elif before.error is None:
            response = model.prompt(self.samples.prompt, **self.prompt_kwargs())
            stream = iter(response)
            next(stream, None)
            stream.close()  # a cancelled prompt: the generator is closed after one chunk
            del stream, response
            after = self.sync_run(model=model)
            if after.said() != before.said():
                found = f"after a cancelled prompt its answer {before.text!r} became {after.text!r}"
            elif self.samples.failing_prompt is not None:
                self.sync_run(self.samples.failing_prompt, model=model)
                after = self.sync_run(model=model)
                if after.said() != before.said():
                    found = (
                        f"after a failed prompt its answer {before.text!r} became {after.text!r}"
                    )
        self.instrument.use(Plan())
        self.bench._verdicts["state"] = found
        return found

    def state_note(self) -> str:
        """A message suffix naming carried state when the sync model shows it, else ''."""
        found = self.carried_state()
        if found is None:
            return ""
        return (
            f" -- the model carries state between prompts: on llm's sync path alone, without "
            f"the adapter, {found}; a plugin finding (reset per-request state at the start "
            "of execute()), not randomness and not the adapter"
        )

    # -- instrument records ----------------------------------------------------------------

    def records(self, count: int = 1, timeout: float = 10.0) -> list[Record]:
        records = self.instrument.wait_for_records(count, timeout)
        assert len(records) >= count, (
            f"expected {count} call(s) of the sync execute(), saw {len(records)}: the "
            "adapter did not run the sync model"
        )
        return records

    def is_twin(self, model: Any) -> bool:
        return adapter.is_twin(model)
