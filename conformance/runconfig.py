"""What one test class runs against: model id, matrix cell, fixtures and env."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

OPT_MODEL = "llm_model"
OPT_CELL = "llm_cell"
OPT_FIXTURE = "llm_fixture"
OPT_REPORT = "llm_report_json"
OPT_EXPECTED = "llm_expected_failures"

_cells: dict[str, Any] = {}


@dataclass
class RunConfig:
    model_id: str | None
    cell: Any | None = None  # conformance.matrix.Cell
    cell_name: str | None = None
    fixtures: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def load_cell(name: str) -> Any:
    """``conformance.matrix.load_cell``, imported only when a cell is asked for."""
    if name not in _cells:
        from conformance.matrix import load_cell as load

        _cells[name] = load(name)
    return _cells[name]


def for_class(cls: type, config: pytest.Config) -> RunConfig:
    cell_name = config.getoption(OPT_CELL, None)
    cell, error = None, None
    if cell_name:
        try:
            cell = load_cell(cell_name)
        except Exception as failure:  # reported on every clause of the class
            error = f"cannot load matrix cell {cell_name!r}: {failure}"
    model_id = (
        getattr(cls, "model_id", None)
        or config.getoption(OPT_MODEL, None)
        or getattr(cell, "model_id", None)
    )
    fixtures = [
        *(getattr(cell, "fixtures", None) or []),
        *(config.getoption(OPT_FIXTURE, None) or []),
        *(getattr(cls, "llm_fixtures", None) or []),
    ]
    env = {**(getattr(cell, "env", None) or {}), **(getattr(cls, "env", None) or {})}
    return RunConfig(model_id, cell, cell_name, list(dict.fromkeys(fixtures)), env, error)


def expected_failures_file(cls: type, config: pytest.Config) -> Path | None:
    chosen = config.getoption(OPT_EXPECTED, None) or getattr(cls, "expected_failures_file", None)
    if not chosen:
        return None
    path = Path(chosen)
    return path if path.is_absolute() else Path(config.rootpath) / path
