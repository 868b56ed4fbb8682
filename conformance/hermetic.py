"""The hermetic environment: temporary llm user dir, home and work dir, fixtures, settings file."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ADAPTER_SETTINGS_FILE = "llm-all-models-async.json"


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


def _fixture_factories(names: list[str]) -> list[tuple[str, Any]]:
    if not names:
        return []
    try:
        from conformance.fixtures import FIXTURES
    except ImportError as error:
        raise RuntimeError(
            f"fixtures {names} were requested but conformance.fixtures cannot be imported: {error}"
        ) from error
    factories = []
    for name in names:
        if name not in FIXTURES:
            raise RuntimeError(
                f"unknown fixture {name!r}; known fixtures: {', '.join(sorted(FIXTURES))}"
            )
        factories.append((name, FIXTURES[name]))
    return factories


@contextmanager
def hermetic(root: Path, *, env: Mapping[str, str], fixtures: list[str]) -> Iterator[Hermetic]:
    """Enter the environment: everything is undone (servers stopped) on exit."""
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
        factories = _fixture_factories(list(fixtures))
        if factories:
            from conformance.fixtures import FixtureContext

            for _name, factory in factories:
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
