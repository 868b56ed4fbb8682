"""``SyncModelConformance``: the standard test class plugin authors subclass, with its fixtures."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from . import adapter, capabilities, expectations, preflight, runconfig, samples, subject
from .clauses.cancellation import CancellationClauses
from .clauses.concurrency import ConcurrencyClauses
from .clauses.conversation import ConversationClauses
from .clauses.differential import DifferentialClauses
from .clauses.errors import ErrorClauses
from .clauses.hook import HookClauses
from .clauses.hygiene import HygieneClauses
from .clauses.inputs import InputClauses
from .clauses.isolation import IsolationClauses
from .clauses.keys import KeyClauses
from .clauses.logs import LogsClauses
from .clauses.loop import LoopClauses
from .clauses.options import OptionsClauses
from .clauses.process import ProcessClauses
from .clauses.streaming import StreamingClauses
from .clauses.suite import SuiteClauses
from .clauses.timeouts import TimeoutClauses
from .clauses.worker import WorkerClauses
from .context import RELEASE_BOUND, Bench, Context
from .hermetic import hermetic
from .instrument import Instrument
from .probe import RemoteInstrument
from .resources import stdio_kept


class _Derive:
    """Marker default: derive this capability from the model."""

    def __repr__(self) -> str:
        return "DERIVE"


DERIVE: Any = _Derive()
EXPECTATIONS_KEY = pytest.StashKey[dict[type, expectations.Expectations]]()
PREFLIGHT_KEY = pytest.StashKey[dict[str, str | None]]()


def _class_value(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        if name in vars(klass):
            value = vars(klass)[name]
            return value.__func__ if isinstance(value, staticmethod) else value
    return None


def class_expectations(cls: type, config: pytest.Config) -> expectations.Expectations:
    """The expected failures of one test class (cached on the config)."""
    cache = config.stash.setdefault(EXPECTATIONS_KEY, {})
    if cls not in cache:
        run = runconfig.for_class(cls, config)
        cache[cls] = expectations.load(
            model_id=run.model_id,
            pyproject=config.rootpath / "pyproject.toml",
            file=runconfig.expected_failures_file(cls, config),
            cell=getattr(run.cell, "expected_failures", None),
            cell_name=run.cell_name,
            class_entries=_class_value(cls, "expected_failures"),
            class_name=cls.__name__,
            isolation=run.isolation,
        )
    return cache[cls]


def run_preflight(config: pytest.Config, bench: Bench) -> None:
    """Stop the session (exit code 2) when the sample prompt fails on the sync model alone."""
    assert bench.models is not None and bench.samples is not None
    sample = bench.samples
    options = dict(sample.prompt_options)
    key = repr((bench.models.model_id, sample.prompt, sample.system, sorted(options.items())))
    done = config.stash.setdefault(PREFLIGHT_KEY, {})
    if key not in done:
        done[key] = preflight.failure(
            bench.models.model_id, bench.models.sync, sample.prompt, sample.system, options
        )
    message = done[key]
    if message is None:
        return
    stop_run(config, bench, message, "the sample prompt fails on the sync model alone")


def stop_run(config: pytest.Config, bench: Bench, message: str, summary: str) -> None:
    """End the session with exit code 2 (a usage or preflight error, not a verdict)."""
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is None:
        pytest.exit(message, returncode=preflight.EXIT_CODE)
    # An xdist worker: pytest.exit there reads as a crashed worker.  Hand the message to the
    # controller (plugin.pytest_testnodedown), which prints it once and exits with 2; this
    # worker's clauses of the model skip with it.
    workeroutput[preflight.WORKER_KEY] = message
    bench.setup_skip = (
        f"{summary}: see the section 'llm conformance preflight failed' for the error and the fix"
    )


class SyncModelConformance(
    IsolationClauses,
    HygieneClauses,
    LoopClauses,
    ProcessClauses,
    LogsClauses,
    ConcurrencyClauses,
    WorkerClauses,
    InputClauses,
    ConversationClauses,
    ErrorClauses,
    TimeoutClauses,
    CancellationClauses,
    DifferentialClauses,
    StreamingClauses,
    KeyClauses,
    OptionsClauses,
    HookClauses,
    SuiteClauses,
):
    """Subclass it in your plugin's tests and name your model::

        from conformance import SyncModelConformance

        class TestMyModel(SyncModelConformance):
            model_id = "my-model"
            prompt = "Say hello"                       # samples: see conformance.samples
            prompt_options = {"max_tokens": 8}
            expected_failures = {"concurrency.stdio": "redirects fd 1 while generating"}

    Capabilities are derived from the model; set one here to override it (``DERIVE`` keeps
    the derived value).  Samples left at None use the suite's defaults.
    """

    model_id: ClassVar[str | None] = None

    # Capabilities (conformance.capabilities.NAMES); DERIVE = read from the model / measure.
    can_stream: ClassVar[Any] = DERIVE
    Options: ClassVar[Any] = DERIVE
    needs_key: ClassVar[Any] = DERIVE
    key_env_var: ClassVar[Any] = DERIVE
    supports_tools: ClassVar[Any] = DERIVE
    supports_schema: ClassVar[Any] = DERIVE
    attachment_types: ClassVar[Any] = DERIVE
    supports_conversation: ClassVar[Any] = DERIVE
    deterministic: ClassVar[Any] = DERIVE
    model_concurrency: ClassVar[Any] = DERIVE

    # Samples (conformance.samples.Samples); None = the suite's default.
    prompt: ClassVar[str | None] = None
    system: ClassVar[str | None] = None
    prompt_options: ClassVar[dict[str, Any] | None] = None
    options: ClassVar[dict[str, Any] | None] = None
    invalid_options: ClassVar[dict[str, Any] | None] = None
    failing_prompt: ClassVar[str | None] = None
    conversation_prompts: ClassVar[Any] = None
    tool: ClassVar[Any] = None
    tool_prompt: ClassVar[str | None] = None
    schema: ClassVar[dict[str, Any] | None] = None
    schema_prompt: ClassVar[str | None] = None
    attachment: ClassVar[Any] = None
    attachment_prompt: ClassVar[str | None] = None
    seed: ClassVar[int | None] = None
    concurrent_prompts: ClassVar[int | None] = None

    # Environment of the run.
    llm_fixtures: ClassVar[list[str]] = []
    env: ClassVar[dict[str, str]] = {}
    adapter_settings: ClassVar[dict[str, Any]] = {}
    expected_failures: ClassVar[dict[str, str]] = {}
    expected_failures_file: ClassVar[str | None] = None
    clause_timeout: ClassVar[float] = 120.0
    # "thread" or "process": the adapter's isolation for this class (wins over --llm-isolation).
    isolation: ClassVar[str | None] = None

    def reseed(self, seed: int) -> None:
        """Called before each compared run; override to seed other generators (numpy, torch)."""
        random.seed(seed)

    # -- fixtures a subclass may override ----------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def llm_conformance_samples(cls) -> dict[str, Any]:
        """Extra samples computed at run time (override in a subclass); wins over attributes."""
        return {}

    @pytest.fixture(scope="class")
    @classmethod
    def llm_conformance_capabilities(cls) -> dict[str, Any]:
        """Extra capability overrides computed at run time (override in a subclass)."""
        return {}

    # -- the machinery -----------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def llm_conformance_bench(
        cls,
        request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory,
        llm_conformance_samples: dict[str, Any],
        llm_conformance_capabilities: dict[str, Any],
    ) -> Iterator[Bench]:
        run = runconfig.for_class(cls, request.config)
        bench = Bench(run.model_id, cell=run.cell_name, isolation=run.isolation)
        if run.error or not run.model_id:
            bench.setup_error = run.error or (
                "no model to test: pass --llm-model MODEL_ID or --llm-cell NAME, or set "
                f"model_id on {cls.__name__}"
            )
            yield bench
            return
        root = tmp_path_factory.mktemp("llm-conformance")
        instrument: Instrument | None = None
        with hermetic(root, env=run.env, fixtures=run.fixtures) as place:
            bench.place = place
            found = adapter.info()
            if not found.active:
                bench.inactive_reason = "adapter inactive: " + (
                    found.inactive_reason or found.import_error or "unknown reason"
                )
            overrides = cls._capability_overrides(run, llm_conformance_capabilities)
            concurrency = overrides.get("model_concurrency", (None, ""))[0]
            settings = dict(_class_value(cls, "adapter_settings") or {})
            if concurrency is not None:
                settings["model_concurrency"] = int(concurrency)
            if settings:
                place.write_adapter_settings(run.model_id, settings)
            try:
                bench.models = subject.resolve(run.model_id)
                bench.samples = samples.build(
                    getattr(run.cell, "samples", None),
                    {name: _class_value(cls, name) for name in samples.FIELDS},
                    llm_conformance_samples,
                )
            except Exception as error:
                # An unknown model id or bad samples: a usage error, not a verdict on the
                # adapter, so the run stops (exit code 2) instead of erroring every clause.
                stop_run(
                    request.config,
                    bench,
                    f"llm conformance: cannot set up {run.model_id!r}: "
                    f"{type(error).__name__}: {error}. Check the model id (`llm models`) and "
                    "the samples; no clause can give a verdict.",
                    f"cannot set up {run.model_id!r}",
                )
                yield bench
                return
            run_preflight(request.config, bench)
            if bench.setup_skip:
                yield bench
                return
            bench.caps = capabilities.derive(bench.models.sync, overrides)
            if bench.caps.values.get("model_concurrency") is None:
                bench.caps.set(
                    "model_concurrency",
                    adapter.configured_concurrency(run.model_id),
                    "adapter settings",
                )
            bench.reseed_hook = cls().reseed
            announce = pytest.MonkeyPatch()
            if run.isolation == "process":
                remote = RemoteInstrument(type(bench.models.sync))
                remote.seed = bench.samples.seed
                instrument = remote
                instrument.install()
                for key, value in remote.announcement().items():
                    announce.setenv(key, value)
            else:
                instrument = Instrument(type(bench.models.sync))
                instrument.install()
            bench.instrument = instrument
            try:
                yield bench
            finally:
                instrument.reset()
                instrument.wait_for_idle(RELEASE_BOUND)
                if run.isolation == "process":
                    adapter.stop_workers()
                instrument.uninstall()
                announce.undo()

    @classmethod
    def _capability_overrides(
        cls, run: runconfig.RunConfig, from_fixture: dict[str, Any]
    ) -> dict[str, tuple[Any, str]]:
        overrides: dict[str, tuple[Any, str]] = {}
        layers = (  # (values, source, whether None is a value rather than "not set")
            (getattr(run.cell, "capabilities", None) or {}, f"matrix cell {run.cell_name}", False),
            ({n: _class_value(cls, n) for n in capabilities.NAMES}, cls.__name__, True),
            (from_fixture or {}, "llm_conformance_capabilities", False),
        )
        for values, source, none_is_value in layers:
            for name, value in values.items():
                if name not in capabilities.NAMES:
                    raise ValueError(
                        f"{source}: unknown capability {name!r}; known: "
                        + ", ".join(capabilities.NAMES)
                    )
                if value is DERIVE or (value is None and not none_is_value):
                    continue
                overrides[name] = (value, source)
        return overrides

    @pytest.fixture
    def llm_conformance(
        self,
        llm_conformance_bench: Bench,
        request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch,
    ) -> Iterator[Context]:
        bench = llm_conformance_bench
        if bench.setup_error:
            pytest.fail(bench.setup_error, pytrace=False)
        if bench.setup_skip:
            pytest.skip(bench.setup_skip)
        if bench.inactive_reason:
            pytest.skip(bench.inactive_reason)
        assert bench.instrument is not None
        bench.instrument.reset()
        with stdio_kept():
            try:
                yield Context(bench, request, monkeypatch)
            finally:
                bench.instrument.reset()
                bench.instrument.wait_for_idle(RELEASE_BOUND)

    @pytest.fixture
    def llm_conformance_expectations(
        self, request: pytest.FixtureRequest
    ) -> expectations.Expectations:
        found = class_expectations(type(self), request.config)
        problems = list(found.problems) + [
            f"{entry.source}: {entry.clause_id!r} is not a clause id" for entry in found.unknown
        ]
        if problems:
            pytest.fail(
                "expected failures that match no clause: "
                + "; ".join(problems)
                + " (clause ids: conformance/README.md)",
                pytrace=False,
            )
        return found


__all__ = ["DERIVE", "SyncModelConformance"]
