"""Expected failures declared by the plugin: one strict entry per clause id, with its reason.

Sources, merged (later wins): ``[tool.llm-conformance]`` in the plugin's pyproject.toml, a
TOML file with the same layout at top level, the matrix cell, the test class attribute
``expected_failures``.  In each TOML source::

    [expected-failures]                      # for every model the plugin tests
    "concurrency.stdio" = "redirects fd 1/2 process-wide (os.dup2)"

    [models."my-model".expected-failures]    # for one model id
    "streaming.incremental" = "the backend returns the whole text at once"

Entries are strict: a clause listed here that passes fails the run (XPASS(strict)); an entry
naming no known clause id is reported by ``suite.expectations`` as an error.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .catalog import CLAUSES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pytest depends on tomli on 3.10
    import tomli as tomllib

TABLE_KEY = "expected-failures"


@dataclass(frozen=True)
class Entry:
    clause_id: str
    reason: str
    source: str


@dataclass
class Expectations:
    entries: dict[str, Entry] = field(default_factory=dict)
    unknown: list[Entry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, mapping: Mapping[str, Any] | None, source: str) -> None:
        for clause_id, reason in (mapping or {}).items():
            if not isinstance(reason, str) or not reason.strip():
                self.problems.append(
                    f"{source}: entry {clause_id!r} needs a non-empty reason string"
                )
                continue
            entry = Entry(str(clause_id), reason.strip(), source)
            if entry.clause_id in CLAUSES:
                self.entries[entry.clause_id] = entry
            else:
                self.unknown.append(entry)

    def reason_for(self, clause_id: str) -> str | None:
        entry = self.entries.get(clause_id)
        return None if entry is None else f"{entry.reason} [expected failure, {entry.source}]"


def _from_layout(
    data: Mapping[str, Any], model_id: str | None, source: str, into: Expectations
) -> None:
    into.add(data.get(TABLE_KEY), source)
    models = data.get("models") or {}
    if model_id is not None and model_id in models:
        into.add((models[model_id] or {}).get(TABLE_KEY), f"{source} [models.{model_id}]")


def read_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def load(
    *,
    model_id: str | None,
    pyproject: Path | None = None,
    file: Path | None = None,
    cell: Mapping[str, str] | None = None,
    cell_name: str | None = None,
    class_entries: Mapping[str, str] | None = None,
    class_name: str | None = None,
) -> Expectations:
    result = Expectations()
    if pyproject is not None and pyproject.is_file():
        try:
            table = read_toml(pyproject).get("tool", {}).get("llm-conformance", {})
        except (OSError, tomllib.TOMLDecodeError) as error:
            result.problems.append(f"{pyproject}: {error}")
            table = {}
        _from_layout(table, model_id, f"{pyproject.name} [tool.llm-conformance]", result)
    if file is not None:
        try:
            _from_layout(read_toml(file), model_id, str(file), result)
        except (OSError, tomllib.TOMLDecodeError) as error:
            result.problems.append(f"{file}: {error}")
    result.add(cell, f"matrix cell {cell_name}")
    result.add(class_entries, f"{class_name}.expected_failures")
    return result
