"""Settings of a check without Python: what a test class can set, read from TOML and flags.

``llm async check`` and ``pytest --pyargs conformance --llm-config FILE`` accept everything a
:class:`~conformance.SyncModelConformance` subclass can set, under the same names: samples
(``prompt``, ``prompt_options``, ``options``, ``invalid_options``...), capabilities
(``can_stream``, ``needs_key``...), ``env``, ``adapter_settings``, ``clause_timeout``,
``llm_fixtures``, plus ``expected-failures`` (and ``models."ID".expected-failures``) in the
layout of ``[tool.llm-conformance]``, ``isolation`` and ``samples`` (a samples file).

A settings file is read from its ``[tool.llm-conformance]`` table when it has one (a
pyproject.toml), else from its top level. Every key and value is checked here, before any
clause runs: a bad one is a usage error naming the key, where it came from and what was
expected, never silently dropped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import capabilities, samples

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pytest depends on tomli on 3.10
    import tomli as tomllib

TABLE = ("tool", "llm-conformance")
EXPECTED = "expected-failures"
ISOLATION_ENV_VAR = "LLM_ASYNC_ISOLATION"
ISOLATION_MODES = ("thread", "process")

_TEXT = ("prompt", "system", "failing_prompt", "tool_prompt", "schema_prompt", "attachment_prompt")
_TABLES = ("prompt_options", "options", "invalid_options", "schema", "attachment")
_FLAGS = ("can_stream", "supports_tools", "supports_schema", "supports_conversation")
_ENVIRONMENT = ("env", "adapter_settings", "clause_timeout", "llm_fixtures")
_OTHER = (EXPECTED, "models", "isolation", "samples")
# every key a settings file may hold, in the order the README lists them
KEYS = (*samples.FIELDS, *capabilities.NAMES, *_ENVIRONMENT, *_OTHER)


class SettingsError(ValueError):
    """A settings file or value the suite cannot use; the message names it and the fix."""


def _key(name: str) -> str:
    """Keys are written with ``-`` or ``_`` alike (``failing-prompt`` = ``failing_prompt``)."""
    if name in (EXPECTED, "expected_failures"):
        return EXPECTED
    return name.replace("-", "_")


def _kind(value: Any) -> str:
    return type(value).__name__


def _check_value(key: str, value: Any, where: str) -> Any:
    """``value`` for ``key`` in the form the test class takes, or SettingsError."""

    def bad(expected: str) -> SettingsError:
        return SettingsError(f"{where}: {key} must be {expected}, got {_kind(value)} {value!r}")

    if key in _TEXT or key == "key_env_var":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if key in _TABLES:
        if not isinstance(value, Mapping):
            raise bad("a table")
        return dict(value)
    if key == "conversation_prompts":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return list(value)
    if key == "tool":
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(v, str) and ":" in v for v in items):
            raise bad("a 'package.module:function' string or a list of them")
        return value
    if key in ("seed", "concurrent_prompts", "model_concurrency"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad("a whole number >= 1")
        return value
    if key in (*_FLAGS, "deterministic"):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if key == "needs_key":
        if value is not False and not isinstance(value, str):
            raise bad("the key's alias (a string) or false")
        return value or None
    if key == "attachment_types":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of MIME types")
        return frozenset(value)
    if key == "Options":
        if not isinstance(value, str) or ":" not in value:
            raise bad("a 'package.module:Class' string")
        return value
    if key == "env":
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise bad("a table of strings")
        return dict(value)
    if key == "adapter_settings":
        if not isinstance(value, Mapping):
            raise bad("a table")
        return dict(value)
    if key == "clause_timeout":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise bad("a number of seconds > 0")
        return float(value)
    if key == "llm_fixtures":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of fixture names")
        return list(value)
    if key == "samples":
        if not isinstance(value, str):
            raise bad("the path of a samples file")
        return value
    if key == "isolation":
        if value not in ISOLATION_MODES:
            raise bad(" or ".join(repr(mode) for mode in ISOLATION_MODES))
        return value
    if key == EXPECTED:
        return check_expected(value, where)
    if key == "models":
        if not isinstance(value, Mapping):
            raise bad('a table of model ids, each with an "expected-failures" table')
        models = {}
        for model_id, table in value.items():
            inner = f"{where} [models.{model_id}]"
            if not isinstance(table, Mapping) or set(map(_key, table)) - {EXPECTED}:
                raise SettingsError(f"{inner}: only an expected-failures table is allowed here")
            models[str(model_id)] = {
                EXPECTED: check_expected(
                    next((v for k, v in table.items() if _key(k) == EXPECTED), {}), inner
                )
            }
        return models
    raise AssertionError(key)  # pragma: no cover - KEYS and this function list the same keys


def check_expected(value: Any, where: str) -> dict[str, Any]:
    """An expected-failures table: clause id -> a reason (matched as text in the failure
    message) or a table ``{reason, match}`` (``match``: a regular expression)."""
    if not isinstance(value, Mapping):
        raise SettingsError(f"{where}: expected-failures must be a table of clause id = reason")
    from .catalog import CLAUSES

    table = {}
    for clause_id, reason in value.items():
        if clause_id not in CLAUSES:
            raise SettingsError(
                f"{where}: expected failure {clause_id!r} is not a clause id "
                "(the clause table: conformance/README.md)"
            )
        if isinstance(reason, Mapping):  # {reason, match}: see conformance.expectations
            from .expectations import Expectations

            found = Expectations()
            found.add({clause_id: reason}, where)
            if found.problems:
                raise SettingsError(found.problems[0])
            table[str(clause_id)] = dict(reason)
            continue
        if not isinstance(reason, str) or not reason.strip():
            raise SettingsError(
                f"{where}: expected failure {clause_id!r} needs a non-empty reason string"
            )
        table[str(clause_id)] = reason
    return table


def check(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validated settings, keys normalised; ``where`` names the source in error messages."""
    checked: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = _key(str(raw_key))
        if key not in KEYS:
            raise SettingsError(
                f"{where}: unknown setting {raw_key!r}; known settings: {', '.join(KEYS)}"
            )
        checked[key] = _check_value(key, value, where)
    return checked


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SettingsError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise SettingsError(f"{path}: not valid {kind}: {error}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a table of settings")
    return data


def read_file(path: Path | str) -> dict[str, Any]:
    """Settings from ``path``: its ``[tool.llm-conformance]`` table, else its top level.

    A ``samples = "FILE"`` entry is read too (relative to ``path``) and merged under the
    file's own keys.
    """
    path = Path(path)
    data = _load(path)
    where = str(path)
    tool = data.get(TABLE[0])
    if isinstance(tool, Mapping) and TABLE[1] in tool:
        data, where = tool[TABLE[1]], f"{path} [tool.llm-conformance]"
        if not isinstance(data, Mapping):
            raise SettingsError(f"{where}: expected a table of settings")
    elif path.name == "pyproject.toml":
        raise SettingsError(f"{path}: no [tool.llm-conformance] table")
    settings = check(data, where)
    sample_file = settings.pop("samples", None)
    if sample_file is not None:
        settings = merge(read_samples(path.parent / sample_file), settings)
    return settings


def read_samples(path: Path | str) -> dict[str, Any]:
    """A samples file (``--samples``): sample fields at top level, e.g. ``[options]``."""
    path = Path(path)
    data = _load(path)
    unknown = [key for key in data if _key(key) not in samples.FIELDS]
    if unknown:
        raise SettingsError(
            f"{path}: not a sample: {', '.join(map(repr, unknown))}; "
            f"samples: {', '.join(samples.FIELDS)}"
        )
    return check(data, str(path))


def merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers win; tables of values (options, env, expected failures...) merge by key."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


def write_json(settings: Mapping[str, Any], path: Path) -> Path:
    """The settings as a JSON file ``--llm-config`` reads back (frozensets become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, frozenset):
            return sorted(value)
        raise TypeError(f"{_kind(value)} {value!r} cannot be passed to the suite")

    path.write_text(json.dumps(dict(settings), indent=2, default=plain) + "\n", encoding="utf-8")
    return path


def class_attributes(settings: Mapping[str, Any], model_id: str | None) -> dict[str, Any]:
    """The test-class attributes these settings stand for (the suite's own TestConformance)."""
    attributes: dict[str, Any] = {}
    for key, value in settings.items():
        if key in (EXPECTED, "models", "isolation", "samples"):
            continue
        if key == "Options":
            value = _import(value)
        attributes[key] = value
    expected = dict(settings.get(EXPECTED, {}))
    if model_id is not None:
        expected.update(settings.get("models", {}).get(model_id, {}).get(EXPECTED, {}))
    if expected:
        attributes["expected_failures"] = expected
    if "isolation" in settings:
        attributes["env"] = {**attributes.get("env", {}), ISOLATION_ENV_VAR: settings["isolation"]}
    return attributes


def _import(spec: str) -> Any:
    import importlib

    module_name, _, attribute = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise SettingsError(f"Options: cannot import {spec!r}: {error}") from None
