"""The hermetic environment: temporary llm user dir, home and work dir, fixtures, settings file.

A fixture is a context manager factory ``fixture(FixtureContext) -> ContextManager[dict]``: it
writes what a model needs into the temporary user dir (files, stub servers) and yields extra
environment variables. The suite ships no fixtures of its own; the repository's matrix
(``matrix/fixtures``) registers its fixtures by name through ``matrix.pytest_cells``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ADAPTER_SETTINGS_FILE = "llm-all-models-async.json"


@dataclass(frozen=True)
class FixtureContext:
    """Where a fixture may write: llm's user directory and a scratch directory."""

    user_dir: Path
    work_dir: Path

    def prepare(self) -> None:
        """Create both directories."""
        self.user_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)


Fixture = Callable[[FixtureContext], AbstractContextManager[Mapping[str, str] | None]]


@dataclass
class Hermetic:
    root: Path
    user_dir: Path
    work_dir: Path
    home: Path
    env: dict[str, str] = field(default_factory=dict)

    def write_adapter_settings(self, model_id: str, values: Mapping[str, Any]) -> Path:
        """Per-model adapter settings, in the file the adapter reads from the user dir."""
        path = self.user_dir / ADAPTER_SETTINGS_FILE
        data = json.loads(path.read_text()) if path.exists() else {"models": {}}
        data.setdefault("models", {}).setdefault(model_id, {}).update(values)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return path


@contextmanager
def hermetic(
    root: Path, *, env: Mapping[str, str], fixtures: Sequence[tuple[str, Fixture]]
) -> Iterator[Hermetic]:
    """Enter the environment: everything is undone (servers stopped) on exit.

    ``fixtures`` are (name, factory) pairs, set up in order after the environment variables.
    """
    patch = pytest.MonkeyPatch()
    stack = ExitStack()
    place = Hermetic(root, root / "llm-user", root / "work", root / "home")
    try:
        for path in (place.user_dir, place.work_dir, place.home):
            path.mkdir(parents=True, exist_ok=True)
        base = {
            "LLM_USER_PATH": str(place.user_dir),
            "HOME": str(place.home),
            "XDG_CONFIG_HOME": str(place.home / ".config"),
            "XDG_CACHE_HOME": str(place.home / ".cache"),
            "XDG_DATA_HOME": str(place.home / ".local" / "share"),
        }
        for key, value in {**base, **env}.items():
            patch.setenv(key, str(value))
            place.env[key] = str(value)
        patch.chdir(place.work_dir)
        for _name, factory in fixtures:
            extra = stack.enter_context(factory(FixtureContext(place.user_dir, place.work_dir)))
            for key, value in (extra or {}).items():
                patch.setenv(key, str(value))
                place.env[key] = str(value)
        yield place
    finally:
        try:
            stack.close()
        finally:
            patch.undo()
