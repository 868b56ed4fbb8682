"""Sync views: conversations and the response API a sync ``execute()`` relies on."""

from __future__ import annotations

import llm
import pytest
from fake_models import History, ResponseApi

pytestmark = pytest.mark.usefixtures("no_leaked_workers")


@pytest.fixture(autouse=True)
def reset_records():
    History.seen.clear()
    ResponseApi.done.clear()


async def test_conversation_turns_see_a_sync_history():
    conversation = llm.get_async_model("history").conversation()
    assert await conversation.prompt("one").text() == "reply to one"
    assert await conversation.prompt("two").text() == "reply to two"
    assert await conversation.prompt("three").text() == "reply to three"
    third = History.seen[2]
    assert isinstance(third["conversation"], llm.Conversation)
    assert third["conversation_id"] == conversation.id
    assert third["texts"] == ["reply to one", "reply to two"]
    assert third["strs"] == ["reply to one", "reply to two"]
    assert third["prompts"] == ["one", "two"]
    assert third["json"] == [{"turn": 1}, {"turn": 2}]
    assert third["tool_calls"] == [[], []]


async def test_conversation_history_matches_the_sync_model():
    sync_conversation = llm.get_model("history").conversation()
    for text in ("one", "two", "three"):
        sync_conversation.prompt(text).text()
    sync_record = History.seen[-1]
    History.seen.clear()
    async_conversation = llm.get_async_model("history").conversation()
    for text in ("one", "two", "three"):
        await async_conversation.prompt(text).text()
    twin_record = History.seen[-1]
    for field in ("texts", "strs", "prompts", "json", "tool_calls"):
        assert twin_record[field] == sync_record[field], field


async def test_no_conversation_stays_none():
    await llm.get_async_model("history").prompt("alone").text()
    assert History.seen[0]["conversation"] is None


@pytest.mark.skipif(
    not hasattr(llm.Model, "supports_conversation"),
    reason="supports_conversation exists from llm 0.36; install llm>=0.36 to run",
)
async def test_a_model_without_conversations_rejects_turn_two_like_its_sync_form():
    from llm.errors import ConversationNotSupported

    sync_conversation = llm.get_model("no-conversation").conversation()
    sync_conversation.prompt("one").text()
    with pytest.raises(ConversationNotSupported) as sync_error:
        sync_conversation.prompt("two")
    conversation = llm.get_async_model("no-conversation").conversation()
    assert await conversation.prompt("one").text() == "single turn"
    with pytest.raises(ConversationNotSupported) as twin_error:
        conversation.prompt("two")
    assert str(twin_error.value) == str(sync_error.value)


async def test_usage_json_resolved_model_and_on_done_reach_the_async_response():
    response = llm.get_async_model("response-api").prompt("hello")
    assert await response.text() == "plain"
    usage = await response.usage()
    assert (usage.input, usage.output, usage.details) == (3, 5, {"cached": 1})
    assert await response.json() == {"raw": "hello"}
    assert response.resolved_model == "response-api-resolved"
    assert ResponseApi.done == ["plain"]


def add_numbers(x: int) -> int:
    """Add two to x."""
    return x + 2


async def test_tool_calls_and_chain_with_a_tool():
    model = llm.get_async_model("response-api")
    response = model.prompt("use a tool", tools=[add_numbers])
    calls = await response.tool_calls()
    assert [(c.name, c.arguments) for c in calls] == [("add_numbers", {"x": 2})]
    chain = model.chain("use a tool", tools=[add_numbers])
    assert "tool said 4" in await chain.text()


@pytest.mark.skipif(
    not hasattr(llm.Response, "execute_tool_call"),
    reason="Response.execute_tool_call exists from llm 0.32; install llm>=0.32 to run",
)
async def test_execute_tool_call_from_the_sync_execute_runs_the_tool():
    response = llm.get_async_model("tool-runner").prompt("go", tools=[add_numbers])
    assert await response.text() == "the tool returned 42"


async def test_async_response_logs_to_the_database(isolated_env):
    import sqlite_utils
    from llm.migrations import migrate

    db = sqlite_utils.Database(isolated_env / "logs.db")
    migrate(db)
    response = llm.get_async_model("response-api").prompt("log me")
    await response.text()
    if "log_to_db" in vars(llm.AsyncResponse):  # llm 0.36
        response.log_to_db(db)
    else:  # llm 0.30-0.35 log async responses through their sync form, as the CLI does
        (await response.to_sync_response()).log_to_db(db)
    if db["turns"].exists():  # the 0.36 schema
        rows = db.execute(
            "select turns.model, prompt, response, input_tokens from turns"
            " join turn_search on turn_search.turn_id = turns.id"
        ).fetchall()
    else:
        rows = db.execute("select model, prompt, response, input_tokens from responses").fetchall()
    assert rows == [("response-api", "log me", "plain", 3)]
