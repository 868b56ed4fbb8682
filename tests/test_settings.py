"""Settings: defaults, validation with clear errors, the per-model file, and ``llm async``."""

from __future__ import annotations

import json

import llm
import pytest
from click.testing import CliRunner
from llm.cli import cli as llm_cli

from llm_all_models_async import SettingError, settings


def test_defaults():
    effective = settings.resolve("probe")
    assert effective.model_concurrency == 1
    assert effective.buffer == 1024
    assert effective.affinity == "any"
    assert effective.timeout is None
    assert effective.max_threads == 16
    assert set(effective.sources.values()) == {"default"}


@pytest.mark.parametrize(
    ("variable", "value", "accepts"),
    [
        ("LLM_ASYNC_MODEL_CONCURRENCY", "abc", "a whole number of at least 1"),
        ("LLM_ASYNC_MODEL_CONCURRENCY", "0", "a whole number of at least 1"),
        ("LLM_ASYNC_BUFFER", "-3", "a whole number of at least 1"),
        ("LLM_ASYNC_MAX_THREADS", "1.5", "a whole number of at least 1"),
        ("LLM_ASYNC_TIMEOUT", "-1", "a number of seconds greater than 0"),
        ("LLM_ASYNC_IDLE_TIMEOUT", "soon", "a number of seconds greater than 0"),
        ("LLM_ASYNC_QUEUE_TIMEOUT", "nan", "a number of seconds greater than 0"),
        ("LLM_ASYNC_AFFINITY", "gpu", "one of 'any', 'model'"),
    ],
)
def test_bad_values_name_the_variable_and_what_it_accepts(monkeypatch, variable, value, accepts):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingError) as info:
        settings.resolve("probe")
    assert variable in str(info.value)
    assert accepts in str(info.value)
    assert repr(value) in str(info.value)


async def test_a_bad_value_fails_the_prompt_instead_of_being_ignored(monkeypatch):
    monkeypatch.setenv("LLM_ASYNC_MODEL_CONCURRENCY", "0")
    with pytest.raises(SettingError, match="LLM_ASYNC_MODEL_CONCURRENCY"):
        await llm.get_async_model("probe").prompt("x").text()


def test_environment_overrides_the_file(monkeypatch):
    settings.write_overrides({"probe": {"model_concurrency": 3, "timeout": 9}})
    effective = settings.resolve("probe")
    assert (effective.model_concurrency, effective.timeout) == (3, 9.0)
    assert effective.sources["model_concurrency"] == "file"
    monkeypatch.setenv("LLM_ASYNC_MODEL_CONCURRENCY", "5")
    effective = settings.resolve("probe")
    assert effective.model_concurrency == 5
    assert effective.sources["model_concurrency"] == "env"
    assert settings.resolve("other").model_concurrency == 5


def test_a_bad_file_entry_is_an_error_naming_the_file_and_model():
    settings.settings_path().write_text(json.dumps({"models": {"probe": {"buffer": 0}}}))
    with pytest.raises(SettingError) as info:
        settings.resolve("probe")
    assert "llm-all-models-async.json" in str(info.value)
    assert "probe" in str(info.value) and "buffer" in str(info.value)


def test_unknown_setting_in_file_is_an_error():
    settings.settings_path().write_text(json.dumps({"models": {"probe": {"bufer": 2}}}))
    with pytest.raises(SettingError, match="unknown setting 'bufer'"):
        settings.resolve("probe")


def test_invalid_json_is_an_error():
    settings.settings_path().write_text("{not json")
    with pytest.raises(SettingError, match="not valid JSON"):
        settings.resolve("probe")


def _run(*args: str):
    return CliRunner().invoke(llm_cli, ["async", *args])


def test_cli_set_and_unset_manage_the_file():
    result = _run("set", "probe-alias", "model_concurrency", "2")
    assert result.exit_code == 0, result.output
    assert json.loads(settings.settings_path().read_text()) == {
        "models": {"probe": {"model_concurrency": 2}}
    }
    assert settings.resolve("probe").model_concurrency == 2
    result = _run("unset", "probe", "model_concurrency")
    assert result.exit_code == 0, result.output
    assert settings.resolve("probe").model_concurrency == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("set", "probe", "model_concurrency", "0"), "a whole number of at least 1"),
        (("set", "probe", "affinity", "gpu"), "one of 'any', 'model'"),
        (("set", "probe", "bufer", "2"), "Unknown setting 'bufer'"),
        (("set", "probe", "max_threads", "2"), "LLM_ASYNC_MAX_THREADS"),
        (("set", "no-such-model", "buffer", "2"), "Unknown model: 'no-such-model'"),
        (("unset", "probe", "buffer"), "probe has no override for buffer"),
    ],
)
def test_cli_rejects_bad_input_clearly(args, message):
    result = _run(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert (
        not settings.settings_path().exists() or "bufer" not in settings.settings_path().read_text()
    )


def test_cli_models_shows_status_and_effective_settings(monkeypatch):
    monkeypatch.setenv("LLM_ASYNC_EXCLUDE", "options-*")
    _run("set", "probe", "timeout", "7")
    result = _run("models", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["model_id"]: row for row in json.loads(result.output)}
    assert rows["probe"]["status"] == "twin"
    assert rows["probe"]["settings"]["timeout"] == {"value": 7.0, "source": "file"}
    assert rows["options-model"]["status"] == "excluded"
    assert rows["native-async"]["status"] == "native async"
    text = _run("models").output
    assert "probe: twin (aliases: probe-alias)" in text
    assert "  timeout=7.0 (file)" in text


def test_cli_models_reports_a_bad_setting(monkeypatch):
    monkeypatch.setenv("LLM_ASYNC_BUFFER", "many")
    result = _run("models")
    assert result.exit_code == 0
    assert "error: LLM_ASYNC_BUFFER: buffer must be a whole number of at least 1" in result.output


def test_every_change_applies_to_the_next_resolve_and_nothing_else_rebuilds(tmp_path, monkeypatch):
    """resolve() runs on the way to every first chunk and compares what it read with what it
    read last time: the same object while nothing changed, the change at once otherwise."""
    from llm_all_models_async.deadlines import Deadlines

    first = settings.resolve("probe")
    assert settings.resolve("probe") is first
    assert Deadlines.from_settings(first) is Deadlines.from_settings(first)

    monkeypatch.setenv("LLM_ASYNC_BUFFER", "7")
    by_env = settings.resolve("probe")
    assert by_env.buffer == 7 and by_env.sources["buffer"] == "env"

    # Another process rewrites the file: no write_overrides() here, only the file.
    settings.settings_path().write_text(json.dumps({"models": {"probe": {"timeout": 3}}}))
    by_file = settings.resolve("probe")
    assert by_file.timeout == 3 and by_file.buffer == 7
    assert Deadlines.from_settings(by_file).timeout == 3

    other_user_dir = tmp_path / "other-user-dir"
    other_user_dir.mkdir()
    monkeypatch.setenv("LLM_USER_PATH", str(other_user_dir))
    elsewhere = settings.resolve("probe")
    assert elsewhere.timeout is None and elsewhere.buffer == 7

    monkeypatch.delenv("LLM_ASYNC_BUFFER")
    assert settings.resolve("probe").buffer == 1024
    assert settings.resolve("other").buffer == 1024
