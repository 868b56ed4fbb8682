"""The 0.30 hook contract: which entries get twins, and what a twin mirrors."""

from __future__ import annotations

import llm
import pytest
from click.testing import CliRunner
from llm.cli import cli as llm_cli

from llm_all_models_async import is_twin
from llm_all_models_async.twins import AsyncKeyTwin, AsyncTwin, model_key


def _entries() -> dict[str, object]:
    return {str(e.model.model_id): e for e in llm.get_models_with_aliases() if e.model}


def test_every_sync_only_model_gets_a_twin():
    entries = _entries()
    for model_id in ("probe", "options-model", "history", "markov"):
        assert is_twin(entries[model_id].async_model), model_id
        assert entries[model_id].async_model.sync_model is entries[model_id].model


def test_native_async_models_are_left_alone():
    twin_or_native = llm.get_async_model("native-async")
    assert not is_twin(twin_or_native)
    assert type(twin_or_native).__name__ == "NativeAsync"
    pytest.importorskip("llm_echo", reason="llm-echo is not installed; pip install -e '.[test]'")
    assert not is_twin(llm.get_async_model("echo"))


def test_key_models_get_key_twins_and_plain_models_plain_twins():
    assert type(llm.get_async_model("needs-key")) is AsyncKeyTwin
    assert type(llm.get_async_model("probe")) is AsyncTwin
    assert isinstance(llm.get_async_model("needs-key"), llm.AsyncKeyModel)
    assert isinstance(llm.get_async_model("probe"), llm.AsyncModel)


def test_aliases_resolve_to_the_twin():
    assert llm.get_async_model("probe-alias").model_id == "probe"


MIRRORED = [
    "model_id",
    "can_stream",
    "attachment_types",
    "supports_schema",
    "supports_tools",
    "needs_key",
    "key_env_var",
    "key",
    "Options",
    "supported_server_side_tools",
    "supports_conversation",
    "json_replacements",
]


@pytest.mark.parametrize("model_id", ["probe", "options-model", "needs-key", "markov"])
@pytest.mark.parametrize("attribute", MIRRORED)
def test_twin_mirrors_what_the_sync_model_declares(model_id, attribute):
    sync = llm.get_model(model_id)
    twin = llm.get_async_model(model_id)
    if not hasattr(sync, attribute):
        assert not hasattr(twin, attribute)
        return
    assert getattr(twin, attribute) == getattr(sync, attribute)


def test_str_is_the_sync_models_str():
    assert str(llm.get_async_model("markov")) == str(llm.get_model("markov"))


def test_unknown_attributes_fall_through_to_the_sync_model():
    sync = llm.get_model("probe")
    type(sync).plugin_specific = "value"
    try:
        assert llm.get_async_model("probe").plugin_specific == "value"
    finally:
        del type(sync).plugin_specific


def test_per_instance_options_are_mirrored():
    twin = llm.get_async_model("options-model")
    sync = twin.sync_model

    class Narrow(llm.Options):
        only: int = 1

    sync.Options = Narrow
    assert twin.Options is Narrow


async def test_options_reach_the_sync_execute():
    twin = llm.get_async_model("options-model")
    assert await twin.prompt("x", length=2, word="hi").text() == "hi hi "
    assert await twin.prompt("x").text() == "word word word "


def test_invalid_options_fail_validation_like_the_sync_model():
    with pytest.raises(Exception) as sync_error:
        llm.get_model("options-model").prompt("x", length=0)
    with pytest.raises(Exception) as twin_error:
        llm.get_async_model("options-model").prompt("x", length=0)
    assert type(twin_error.value) is type(sync_error.value)
    assert "length" in str(twin_error.value)


async def test_markov_options_work_through_the_twin():
    text = await llm.get_async_model("markov").prompt("the cat sat on the mat", length=4).text()
    assert len(text.split()) == 4


def test_twins_are_rebuilt_per_lookup_but_share_state_by_model():
    first, second = llm.get_async_model("probe"), llm.get_async_model("probe")
    assert first is not second
    assert model_key(first.sync_model) == model_key(second.sync_model)


@pytest.mark.parametrize("pattern", ["probe", "probe-alias", "pro*", "PROBE", "x,probe"])
def test_exclude_leaves_matching_models_without_twin(monkeypatch, pattern):
    monkeypatch.setenv("LLM_ASYNC_EXCLUDE", pattern)
    with pytest.raises(llm.UnknownModelError):
        llm.get_async_model("probe")
    assert is_twin(llm.get_async_model("options-model"))


def test_llm_models_async_lists_twins_with_options():
    result = CliRunner().invoke(llm_cli, ["models", "--async", "--options"])
    assert result.exit_code == 0, result.output
    assert "Markov: markov" in result.output
    block = result.output.split("Markov: markov", 1)[1]
    assert "length: int" in block


def test_llm_prompt_async_with_options():
    result = CliRunner().invoke(
        llm_cli,
        ["prompt", "--async", "-m", "options-model", "-o", "length", "2", "-o", "word", "hey", "x"],
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "hey hey"


def test_llm_prompt_async_rejects_an_invalid_option():
    result = CliRunner().invoke(
        llm_cli, ["prompt", "--async", "-m", "options-model", "-o", "length", "zero", "x"]
    )
    assert result.exit_code != 0
    assert "length" in result.output
