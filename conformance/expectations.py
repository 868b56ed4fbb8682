"""Expected failures declared by the plugin: per clause id, the reason and the failure it expects.

Sources, merged (later wins): ``[tool.llm-conformance]`` in the plugin's pyproject.toml, a
TOML file with the same layout at top level, the matrix cell, the test class attribute
``expected_failures``.  In each TOML source::

    [expected-failures]                      # for every model the plugin tests
    "concurrency.stdio" = "fd 1 (stdout) pointed to"          # reason, matched as text

    [models."my-model".expected-failures."streaming.incremental"]   # for one model id
    reason = "the backend returns the whole text at once"
    match = "no chunk reached the consumer"

    [expected-failures."process.state"]      # only in some isolation modes
    reason = "pointed fd 1 at"
    isolation = ["thread"]                   # default: every mode

An entry says which failure it expects, so an adapter regression in the same clause is not
hidden behind it: the clause's failure message must contain the string entry (case and runs of
white space ignored), or match the table entry's ``match`` regular expression (``re.search``;
without ``match`` the reason is matched as text).  A failure that does not match fails the
clause, naming the entry; a clause listed here that passes fails the run (XPASS(strict)); an
entry naming no known clause id, or with an empty reason or a broken pattern, is reported by
``suite.expectations`` as an error.  A table entry with ``isolation`` applies only when the
suite runs in one of those modes: a plugin whose side effect process isolation contains
expects the failure in thread mode alone, and passing in process mode is then no XPASS.
"""

from __future__ import annotations

import re
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
    """One expected failure: why it fails (``reason``) and which failure it is (``pattern``)."""

    clause_id: str
    reason: str
    source: str
    pattern: str | None = None  # a regular expression; None: the reason, matched as text

    def matches(self, message: str) -> bool:
        if self.pattern is not None:
            return re.search(self.pattern, message) is not None
        return _folded(self.reason) in _folded(message)

    def describe_match(self) -> str:
        if self.pattern is not None:
            return f"a failure matching /{self.pattern}/"
        return f"a failure whose message contains {self.reason!r}"


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


ENTRY_KEYS = ("reason", "match", "isolation")
ISOLATION_MODES = ("thread", "process")


@dataclass
class Expectations:
    entries: dict[str, Entry] = field(default_factory=dict)
    unknown: list[Entry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    isolation: str = "thread"  # the mode of this run: entries for other modes do not apply
    other_modes: list[str] = field(default_factory=list)  # clause ids declared for other modes

    def add(self, mapping: Mapping[str, Any] | None, source: str) -> None:
        for clause_id, value in (mapping or {}).items():
            entry = self._entry(str(clause_id), value, source)
            if entry is None or not self._applies(clause_id, value, source):
                continue
            if entry.clause_id in CLAUSES:
                self.entries[entry.clause_id] = entry
            else:
                self.unknown.append(entry)

    def _applies(self, clause_id: str, value: Any, source: str) -> bool:
        """False for a table entry whose ``isolation`` list leaves out this run's mode."""
        modes = value.get("isolation") if isinstance(value, Mapping) else None
        if modes is None:
            return True
        if isinstance(modes, str):
            modes = [modes]
        unknown = [m for m in modes if m not in ISOLATION_MODES] if isinstance(modes, list) else 0
        if not isinstance(modes, list) or not modes or unknown:
            self.problems.append(
                f"{source}: entry {clause_id!r}: isolation must list modes out of "
                f"{', '.join(ISOLATION_MODES)}, got {modes!r}"
            )
            return False
        if self.isolation not in modes:
            self.other_modes.append(clause_id)
            return False
        return True

    def _entry(self, clause_id: str, value: Any, source: str) -> Entry | None:
        """Validate one entry: a reason string, or a table ``{reason = ..., match = ...}``."""
        where = f"{source}: entry {clause_id!r}"
        if isinstance(value, str):
            if not value.strip():
                self.problems.append(f"{where} needs a non-empty reason string")
                return None
            return Entry(clause_id, value.strip(), source)
        if not isinstance(value, Mapping):
            self.problems.append(
                f"{where} must be a reason string or a table {{reason = ..., match = ...}}, "
                f"not {type(value).__name__}"
            )
            return None
        unknown = sorted(set(value) - set(ENTRY_KEYS))
        reason, pattern = value.get("reason"), value.get("match")
        if unknown:
            self.problems.append(
                f"{where} has unknown key(s) {unknown}; known: {', '.join(ENTRY_KEYS)}"
            )
        elif not isinstance(reason, str) or not reason.strip():
            self.problems.append(f"{where} needs a non-empty reason string")
        elif pattern is not None and (not isinstance(pattern, str) or not pattern.strip()):
            self.problems.append(f"{where}: match must be a non-empty regular expression")
        else:
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as error:
                    self.problems.append(f"{where}: match {pattern!r} is not a regex: {error}")
                    return None
            return Entry(clause_id, reason.strip(), source, pattern)
        return None

    def entry_for(self, clause_id: str) -> Entry | None:
        return self.entries.get(clause_id)

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
    cell: Mapping[str, Any] | None = None,
    cell_name: str | None = None,
    class_entries: Mapping[str, Any] | None = None,
    class_name: str | None = None,
    isolation: str = "thread",
) -> Expectations:
    result = Expectations(isolation=isolation)
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
