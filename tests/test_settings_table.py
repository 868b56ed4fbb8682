"""README.md's settings table is the one rendered from the settings specification."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_all_models_async import settings, settings_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_table_is_the_rendered_specification():
    shown = settings_table.table_in(README.read_text(encoding="utf-8"))
    assert shown == settings_table.markdown_table(), (
        "README.md's settings table differs from settings.SPECS; regenerate it with "
        "`python -m llm_all_models_async.settings_table --write README.md`"
    )


def test_every_setting_has_a_row():
    table = settings_table.markdown_table()
    for spec in settings.SPECS.values():
        assert f"| `{spec.env_var}` |" in table
    assert "| `LLM_ASYNC_EXCLUDE` |" in table


def test_a_setting_added_to_the_specification_gets_a_row(monkeypatch):
    extra = settings.Spec("worker_idle", float, 2.5, False, "seconds a worker stays idle")
    monkeypatch.setitem(settings.SPECS, "worker_idle", extra)
    assert (
        "| `LLM_ASYNC_WORKER_IDLE` | `2.5` | seconds a worker stays idle (process-wide only) |"
        in settings_table.markdown_table()
    )


def test_write_rewrites_only_the_block_between_the_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        f"intro\n{settings_table.TABLE_START}\n| stale |\n{settings_table.TABLE_END}\noutro\n"
    )
    assert settings_table.main(["--write", str(readme)]) == 0
    assert readme.read_text() == (
        f"intro\n{settings_table.TABLE_START}\n{settings_table.markdown_table()}"
        f"{settings_table.TABLE_END}\noutro\n"
    )


def test_missing_markers_are_named(tmp_path):
    with pytest.raises(ValueError, match="settings table markers"):
        settings_table.table_in("no table here")
