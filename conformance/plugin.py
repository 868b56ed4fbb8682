"""The pytest plugin (entry point ``llm_conformance``): options, marks, outcomes, table, JSON.

It stays inert for tests that are not conformance clauses, and imports llm only when a
conformance test class actually runs, so installing the suite changes nothing else.

Under pytest-xdist each clause's report carries its clause id and model (``report.
llm_conformance``), so the controller folds every worker's outcomes into the same table and
JSON report a serial run writes; clauses that must run alone take the run's lock
(:mod:`conformance.parallel`).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from . import parallel, runconfig, runsettings
from .marks import MARKER, clause_of
from .outcomes import MISMATCH_ATTR, ClassRun, ClauseResult, apply

ALLOWED_HOSTS = ["127.0.0.1", "::1", "localhost"]
RUNS_KEY = pytest.StashKey[dict[str, ClassRun]]()
PREFLIGHT_KEY = pytest.StashKey[list[str]]()  # preflight failures reported by xdist workers
CLAUSE_KEY = pytest.StashKey[str]()
REPORT_ATTRIBUTE = "llm_conformance"  # set on clause reports; xdist ships it to the controller
COLLECTOR = "llm-conformance-collector"
EXPECTED_KEY = pytest.StashKey[Any]()  # the clause's expectations.Entry, if one is declared


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llm-conformance", "llm conformance suite (llm-all-models-async)")
    group.addoption(
        "--llm-model",
        dest=runconfig.OPT_MODEL,
        metavar="MODEL_ID",
        action="append",
        default=[],
        help="model id (or alias) to check with `pytest --pyargs conformance`; repeat it to "
        "check several models (one test class and one report each)",
    )
    group.addoption(
        "--llm-config",
        dest=runconfig.OPT_CONFIG,
        metavar="PATH",
        help="settings of the suite's own test class (samples, capabilities, env, expected "
        "failures, isolation) from a TOML file's [tool.llm-conformance] table or top level",
    )
    group.addoption(
        "--llm-isolation",
        dest=runconfig.OPT_ISOLATION,
        choices=runconfig.ISOLATIONS,
        help="run the model in the adapter's thread or process isolation (sets "
        "LLM_ASYNC_ISOLATION for the run); a test class's `isolation` attribute wins",
    )
    group.addoption(
        "--llm-report-json",
        dest=runconfig.OPT_REPORT,
        metavar="PATH",
        help="write the JSON report (llm-conformance-report/1) here",
    )
    group.addoption(
        "--llm-expected-failures",
        dest=runconfig.OPT_EXPECTED,
        metavar="PATH",
        help="TOML file of expected failures (same layout as "
        "[tool.llm-conformance] in pyproject.toml)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(clause_id): the llm conformance clause a standard test checks"
    )
    config.stash[RUNS_KEY] = {}
    # pytest_runtest_logreport gets no config: a per-config collector folds the reports
    config.pluginmanager.register(_Collector(config), COLLECTOR)
    path = config.getoption(runconfig.OPT_CONFIG, None)
    if path:
        try:
            config.stash[runconfig.SETTINGS] = runsettings.read_file(path)
        except runsettings.SettingsError as error:
            raise pytest.UsageError(f"--llm-config: {error}") from None


def _expands(obj: Any) -> bool:
    """The suite's own test class (settings apply) or a class that names no model."""
    if not _is_conformance_class(obj) or obj.__name__.startswith("_"):
        return False
    own = obj.__module__ == "conformance.test_conformance" and obj.__name__ == "TestConformance"
    return own or vars(obj).get("model_id", getattr(obj, "model_id", None)) is None


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: Any) -> Any:
    """One class per ``--llm-model`` for classes that name no model, and ``--llm-config``
    settings on the suite's own class: both as subclasses, so the classes stay untouched."""
    if not isinstance(obj, type) or not collector.istestclass(obj, name) or not _expands(obj):
        return None
    config = collector.config
    models: list[str | None] = list(config.getoption(runconfig.OPT_MODEL, None) or [])
    settings = config.stash.get(runconfig.SETTINGS, None)
    own = obj.__module__ == "conformance.test_conformance"
    if len(models) <= 1 and not (settings and own):
        return None
    classes = []
    for model_id in models or [None]:
        attributes: dict[str, Any] = {"__module__": obj.__module__, "__doc__": obj.__doc__}
        if settings and own:
            attributes.update(runsettings.class_attributes(settings, model_id))
        label = name if len(models) <= 1 else f"{name}[{model_id}]"
        if model_id is not None:
            attributes["model_id"] = model_id
        subclass = type(label, (obj,), attributes)
        subclass.__qualname__ = label
        node = pytest.Class.from_parent(collector, name=label)
        node.obj = subclass  # not an attribute of the module: pytest would look it up there
        classes.append(node)
    return classes


def _is_conformance_class(cls: Any) -> bool:
    if not isinstance(cls, type):
        return False
    # by name along the MRO first: other projects' test classes never load the suite here
    bases = {(klass.__module__, klass.__qualname__) for klass in cls.__mro__}
    if ("conformance.standard", "SyncModelConformance") not in bases:
        return False
    from .standard import SyncModelConformance

    return isinstance(cls, type) and issubclass(cls, SyncModelConformance)


def _clause_id(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker(MARKER)
    if marker is not None and marker.args:
        return str(marker.args[0])
    function = getattr(item, "function", None)
    found = clause_of(function)
    if found:
        return found
    from .clauses.suite import standard_tests

    return standard_tests().get(getattr(item, "originalname", item.name))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        cls = getattr(item, "cls", None)
        if not _is_conformance_class(cls):
            continue
        clause_id = _clause_id(item)
        if clause_id is None:
            continue  # the plugin author's own extra tests in the class
        item.stash[CLAUSE_KEY] = clause_id
        plugins = config.pluginmanager
        if plugins.hasplugin("timeout") and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(cls.clause_timeout))
        if plugins.hasplugin("socket") and item.get_closest_marker("allow_hosts") is None:
            item.add_marker(pytest.mark.allow_hosts(ALLOWED_HOSTS))
        from .standard import class_expectations

        entry = class_expectations(cls, config).entry_for(clause_id)
        if entry is not None:
            item.stash[EXPECTED_KEY] = entry


def _run_info(item: pytest.Item) -> dict[str, Any]:
    """What the report needs about the clause's class: run key, model, cell and plugin."""
    parent = item.parent
    config = runconfig.for_class(item.cls, item.config)  # type: ignore[attr-defined]
    return {
        "run": parent.nodeid if parent is not None else item.nodeid,
        "model_id": config.model_id,
        "cell": config.cell_name,
        "isolation": config.isolation,
        "plugin": _plugin_of(item),
    }


def _started(run: ClassRun, report: Any) -> None:
    if not run.clauses:  # the first phase of the class: include its setup time
        run.started = time.time() - float(getattr(report, "duration", 0.0) or 0.0)


def _plugin_of(item: pytest.Item) -> dict[str, str] | None:
    bench = getattr(item, "funcargs", {}).get("llm_conformance_bench")
    models = getattr(bench, "models", None)
    if models is None:
        return None
    from .distribution import distribution_of

    return distribution_of(type(models.sync))


def _judge_expected(report: Any, call: Any, entry: Any) -> None:
    """An expected failure holds only for the failure it describes; anything else fails.

    Replaces pytest's ``xfail(strict=True)``, which matches on the clause alone: a failure of
    the same clause for another reason (an adapter regression) must not pass as expected.
    """
    expected = f"{entry.reason} [expected failure, {entry.source}]"
    if report.when == "call" and report.passed:
        report.outcome = "failed"
        report.longrepr = f"[XPASS(strict)] {expected}"
        return
    if not report.failed or call.excinfo is None:
        return
    value = call.excinfo.value
    message = str(value)
    if entry.matches(message) or entry.matches(call.excinfo.exconly()):
        report.outcome = "skipped"
        report.wasxfail = expected
        return
    mismatch = (
        f"failed, but not with the failure expected by {entry.source} for {entry.clause_id} "
        f"({entry.describe_match()}): {type(value).__name__}: {' '.join(message.split())}"
    )
    setattr(report, MISMATCH_ATTR, mismatch)
    report.sections.append(("llm conformance: unexpected failure", mismatch))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Any) -> Generator[None, Any, Any]:
    """Under xdist, hold the run's lock around the clause (exclusively if it runs alone)."""
    clause_id = item.stash.get(CLAUSE_KEY, None)
    path = parallel.lock_path(item.config) if clause_id is not None else None
    with parallel.turn(path, alone=clause_id is not None and parallel.runs_alone(clause_id)):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, Any]:
    clause_id = item.stash.get(CLAUSE_KEY, None)
    if clause_id is None:
        return (yield)
    # CPython 3.11.7 keeps the AST converter's recursion counter per interpreter: an ast.parse
    # nested inside another (a finaliser run by a garbage collection during pytest's
    # ast.parse of a failure's source, e.g. asyncio logging "Task exception was never
    # retrieved" with a traceback, whose carets 3.11 computes with ast.parse) leaves it
    # unbalanced and pytest dies with "INTERNALERROR SystemError: AST constructor recursion
    # depth mismatch". Run pending finalisers now and keep the collector off while the
    # failure is rendered.
    paused = call.excinfo is not None and gc.isenabled()
    if paused:
        gc.collect()
        gc.disable()
    try:
        report = yield
    finally:
        if paused:
            gc.enable()
    entry = item.stash.get(EXPECTED_KEY, None)
    if entry is not None:
        _judge_expected(report, call, entry)
    setattr(report, REPORT_ATTRIBUTE, {"clause": clause_id, **_run_info(item)})
    return report


class _Collector:
    """Folds each clause phase into its run: in a serial run, or on xdist's controller."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        info = getattr(report, REPORT_ATTRIBUTE, None)
        if not isinstance(info, dict):
            return
        runs = self.config.stash[RUNS_KEY]
        run = runs.get(info["run"])
        if run is None:
            run = runs[info["run"]] = ClassRun(
                info["run"], info["model_id"], info["cell"], info["isolation"]
            )
        if run.plugin is None:
            run.plugin = info.get("plugin")
        _started(run, report)
        result = run.clauses.setdefault(info["clause"], ClauseResult(info["clause"]))
        apply(result, report)
        run.finished = time.time()


def pytest_unconfigure(config: pytest.Config) -> None:
    collector = config.pluginmanager.get_plugin(COLLECTOR)
    if collector is not None:
        config.pluginmanager.unregister(collector)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: collect a worker's preflight failure (see standard.run_preflight)."""
    from .preflight import WORKER_KEY

    message = (getattr(node, "workeroutput", None) or {}).get(WORKER_KEY)
    found = node.config.stash.setdefault(PREFLIGHT_KEY, [])
    if message and message not in found:
        found.append(message)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    for message in config.stash.get(PREFLIGHT_KEY, []):
        terminalreporter.section("llm conformance preflight failed", red=True)
        terminalreporter.write_line(message)
    runs = [run for run in config.stash.get(RUNS_KEY, {}).values() if run.clauses]
    if not runs:
        return
    from .table import render

    width = getattr(terminalreporter, "_tw", None)
    columns = getattr(width, "fullwidth", 100) or 100
    terminalreporter.section("llm conformance")
    for run in runs:
        for line in render(run, columns):
            terminalreporter.write_line(line)
    path = config.getoption(runconfig.OPT_REPORT, None)
    if path:
        from .jsonreport import paths_for

        for written, _ in paths_for(Path(path), runs):
            terminalreporter.write_line(f"JSON report: {written}")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the JSON report also when the terminal summary is not shown (e.g. -p no:terminal);
    xdist's controller writes it for all workers; a preflight failure under xdist makes the
    exit code 2, as without xdist."""
    config = session.config
    if config.stash.get(PREFLIGHT_KEY, []):
        from .preflight import EXIT_CODE

        session.exitstatus = EXIT_CODE
    if hasattr(config, "workerinput"):
        return
    path = config.getoption(runconfig.OPT_REPORT, None)
    runs = [run for run in config.stash.get(RUNS_KEY, {}).values() if run.clauses]
    if path and runs:
        from .jsonreport import write

        write(Path(path), runs)
