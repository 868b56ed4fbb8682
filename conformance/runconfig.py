"""What one test class runs against: model id, matrix cell, fixtures and env.

A matrix cell and named fixtures come from the repository's own pytest plugin
(``-p matrix.pytest_cells``), which puts a cell loader and a fixture registry in the config's
stash; without it, fixtures are the test class's own factories.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .hermetic import Fixture

OPT_MODEL = "llm_model"
OPT_CELL = "llm_cell"
OPT_FIXTURE = "llm_fixture"
OPT_REPORT = "llm_report_json"
OPT_EXPECTED = "llm_expected_failures"
OPT_ISOLATION = "llm_isolation"
ISOLATION_ENV = "LLM_ASYNC_ISOLATION"
ISOLATIONS = ("thread", "process")
OPT_CONFIG = "llm_config"

CELL_LOADER = pytest.StashKey[Callable[[str], Any]]()
FIXTURE_REGISTRY = pytest.StashKey[Mapping[str, Fixture]]()
SETTINGS = pytest.StashKey[dict[str, Any]]()  # --llm-config, checked (conformance.runsettings)

_cells: dict[str, Any] = {}


@dataclass
class RunConfig:
    model_id: str | None
    cell: Any | None = None  # matrix.cells.Cell
    cell_name: str | None = None
    fixtures: list[tuple[str, Fixture]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    isolation: str = "thread"  # the adapter's isolation setting for the whole class


def load_cell(name: str, config: pytest.Config) -> Any:
    """The matrix cell ``name`` through the loader the matrix plugin registered (memoised)."""
    if name not in _cells:
        loader = config.stash.get(CELL_LOADER, None)
        if loader is None:
            raise LookupError("no matrix loaded: run from a checkout with -p matrix.pytest_cells")
        _cells[name] = loader(name)
    return _cells[name]


def resolve_fixtures(
    chosen: list[Any], registry: Mapping[str, Fixture]
) -> list[tuple[str, Fixture]]:
    """(name, factory) pairs for fixture names (from ``registry``) and factories (as given)."""
    resolved: dict[str, Fixture] = {}
    for entry in chosen:
        if callable(entry):
            resolved.setdefault(getattr(entry, "__name__", repr(entry)), entry)
            continue
        if entry not in registry:
            known = ", ".join(sorted(registry)) or "none (load -p matrix.pytest_cells)"
            raise LookupError(f"unknown fixture {entry!r}; known fixtures: {known}")
        resolved.setdefault(entry, registry[entry])
    return list(resolved.items())


def for_class(cls: type, config: pytest.Config) -> RunConfig:
    cell_name = config.getoption(OPT_CELL, None)
    cell, error = None, None
    if cell_name:
        try:
            cell = load_cell(cell_name, config)
        except Exception as failure:  # reported on every clause of the class
            error = f"cannot load matrix cell {cell_name!r}: {failure}"
    models = config.getoption(OPT_MODEL, None) or []
    if isinstance(models, str):
        models = [models]
    model_id = (
        getattr(cls, "model_id", None)
        or (models[0] if len(models) == 1 else None)
        or getattr(cell, "model_id", None)
    )
    chosen = [
        *(getattr(cell, "fixtures", None) or []),
        *(config.getoption(OPT_FIXTURE, None) or []),
        *(getattr(cls, "llm_fixtures", None) or []),
    ]
    fixtures: list[tuple[str, Fixture]] = []
    try:
        fixtures = resolve_fixtures(chosen, config.stash.get(FIXTURE_REGISTRY, {}))
    except LookupError as failure:
        error = error or str(failure)
    env = {**(getattr(cell, "env", None) or {}), **(getattr(cls, "env", None) or {})}
    isolation, problem = _isolation(cls, config, cell, env)
    if isolation is not None:
        env[ISOLATION_ENV] = isolation
    return RunConfig(
        model_id,
        cell,
        cell_name,
        fixtures,
        env,
        error or problem,
        isolation or "thread",
    )


def _isolation(
    cls: type, config: pytest.Config, cell: Any, env: dict[str, str]
) -> tuple[str | None, str | None]:
    """The class attribute, else ``--llm-isolation``, else the cell's or class's env, else
    this process's ``LLM_ASYNC_ISOLATION`` (the adapter would honour it too).

    None means "not chosen": the adapter's own default (thread) applies.
    """
    layers = (
        (getattr(cls, "isolation", None), f"{getattr(cls, '__name__', cls)}.isolation"),
        (config.getoption(OPT_ISOLATION, None), "--llm-isolation"),
        (env.get(ISOLATION_ENV), f"the run's env {ISOLATION_ENV}"),
        (os.environ.get(ISOLATION_ENV), f"environment variable {ISOLATION_ENV}"),
    )
    for value, source in layers:
        if value is None:
            continue
        if value not in ISOLATIONS:
            return None, f"{source} is {value!r}; expected one of {', '.join(ISOLATIONS)}"
        return str(value), None
    return None, None


def expected_failures_file(cls: type, config: pytest.Config) -> Path | None:
    chosen = config.getoption(OPT_EXPECTED, None) or getattr(cls, "expected_failures_file", None)
    if not chosen:
        return None
    path = Path(chosen)
    return path if path.is_absolute() else Path(config.rootpath) / path
