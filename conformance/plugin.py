"""The pytest plugin (entry point ``llm_conformance``): options, marks, outcomes, table, JSON.

It stays inert for tests that are not conformance clauses, and imports llm only when a
conformance test class actually runs, so installing the suite changes nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from . import runconfig
from .marks import MARKER, clause_of
from .outcomes import ClassRun, ClauseResult, apply

ALLOWED_HOSTS = ["127.0.0.1", "::1", "localhost"]
RUNS_KEY = pytest.StashKey[dict[str, ClassRun]]()
CLAUSE_KEY = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llm-conformance", "llm conformance suite (llm-all-models-async)")
    group.addoption(
        "--llm-model",
        dest=runconfig.OPT_MODEL,
        metavar="MODEL_ID",
        help="model id (or alias) to check with `pytest --pyargs conformance`",
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


def _is_conformance_class(cls: Any) -> bool:
    if cls is None:
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

        reason = class_expectations(cls, config).reason_for(clause_id)
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


def _run_for(item: pytest.Item) -> ClassRun:
    runs = item.config.stash[RUNS_KEY]
    parent = item.parent
    key = parent.nodeid if parent is not None else item.nodeid
    run = runs.get(key)
    if run is None:
        config = runconfig.for_class(item.cls, item.config)  # type: ignore[attr-defined]
        run = runs[key] = ClassRun(key, config.model_id, config.cell_name)
    return run


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, Any]:
    report = yield
    clause_id = item.stash.get(CLAUSE_KEY, None)
    if clause_id is None:
        return report
    run = _run_for(item)
    if run.plugin is None:
        run.plugin = _plugin_of(item)
    _started(run, report)
    result = run.clauses.setdefault(clause_id, ClauseResult(clause_id))
    apply(result, report)
    run.finished = time.time()
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the JSON report also when the terminal summary is not shown (e.g. -p no:terminal)."""
    config = session.config
    path = config.getoption(runconfig.OPT_REPORT, None)
    runs = [run for run in config.stash.get(RUNS_KEY, {}).values() if run.clauses]
    if path and runs:
        from .jsonreport import write

        write(Path(path), runs)
