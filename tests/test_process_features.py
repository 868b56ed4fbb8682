"""isolation=process: what the worker's execute() receives and writes, keys, fds, bad input."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import llm
import process_models
import pytest
from process_helpers import eventually, stop_all_workers
from process_models import script_prompt

import llm_all_models_async as lama
from llm_all_models_async.process import registry

process_models.register()

LLM_032 = hasattr(llm.Response, "execute_tool_call")


@pytest.fixture(autouse=True)
def process_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LLM_ASYNC_ISOLATION", "process")
    yield
    stop_all_workers()


def add_one(x: int) -> int:
    """Add one."""
    return x + 1


async def inspect(response: llm.AsyncResponse) -> dict[str, object]:
    seen = json.loads(await response.text())
    assert seen["pid"] != os.getpid()
    return seen


async def test_prompt_system_options_fragments_schema_attachments(tmp_path: Path) -> None:
    note = tmp_path / "note.txt"
    note.write_text("hello file")
    model = llm.get_async_model("proc-inspect")
    response = model.prompt(
        "the question",
        system="be brief",
        fragments=["fragment one"],
        schema={"type": "object", "properties": {"a": {"type": "string"}}},
        attachments=[
            llm.Attachment(path=str(note), type="text/plain"),
            llm.Attachment(content=b"\x89PNG bytes", type="image/png"),
            llm.Attachment(url="http://127.0.0.1:9/never-fetched.png", type="image/png"),
        ],
        temperature=0.5,
        label="x",
    )
    seen = await inspect(response)
    assert seen["prompt"] == "fragment one\nthe question"
    assert seen["system"] == "be brief"
    assert seen["fragments"] == ["fragment one"]
    assert seen["options"] == {"temperature": 0.5, "label": "x"}
    assert seen["schema"] == {"type": "object", "properties": {"a": {"type": "string"}}}
    assert seen["attachments"] == [
        {"type": "text/plain", "path": str(note), "url": None, "bytes": 10},
        {"type": "image/png", "path": None, "url": None, "bytes": 10},
        {
            "type": "image/png",
            "path": None,
            "url": "http://127.0.0.1:9/never-fetched.png",
            "bytes": None,
        },
    ]
    assert seen["response_prompt"] == seen["prompt"]
    assert response.response_json == {"inspected": True}


async def test_tool_definitions_travel_without_callables_and_tool_calls_come_back() -> None:
    response = llm.get_async_model("proc-inspect").prompt("use it", tools=[add_one])
    seen = await inspect(response)
    assert seen["tools"] == [{"name": "add_one", "has_implementation": False}]
    calls = await response.tool_calls()
    assert [(c.name, c.arguments, c.tool_call_id) for c in calls] == [("add_one", {"x": 1}, "c1")]


async def test_conversation_history_as_sync_responses() -> None:
    model = llm.get_async_model("proc-inspect")
    conversation = model.conversation()
    first = conversation.prompt("first question", tools=[add_one])
    await first.text()
    second = conversation.prompt("second question")
    seen = await inspect(second)
    assert seen["conversation_id"] == conversation.id
    (previous,) = seen["history"]
    first_text = await first.text()
    assert previous["text"] == previous["str"] == first_text
    assert previous["prompt"] == "first question"
    assert previous["json"] == {"inspected": True}
    assert previous["tool_calls"] == [["add_one", {"x": 1}]]


async def test_tool_results_reach_the_worker() -> None:
    result = llm.ToolResult(name="add_one", output="3", tool_call_id="c1")
    response = llm.get_async_model("proc-inspect").prompt(
        "results", tools=[add_one], tool_results=[result]
    )
    seen = await inspect(response)
    assert seen["tool_results"] == [["add_one", "3", "c1"]]


async def test_response_writes_reach_the_async_response() -> None:
    model = llm.get_async_model("response-api")
    response = model.prompt("call", tools=[add_one])
    assert await response.text() == "calling a tool"
    (call,) = await response.tool_calls()
    assert (call.name, call.arguments, call.tool_call_id) == ("add_one", {"x": 2}, "t1")
    assert response.resolved_model == "response-api-resolved"


@pytest.mark.skipif(not LLM_032, reason="execute_tool_call exists from llm 0.32")
async def test_execute_tool_call_runs_the_tool_in_the_parent() -> None:
    calls: list[int] = []

    def plus_two(x: int) -> int:
        """Add two, in the parent."""
        calls.append(os.getpid())
        return x + 2

    response = llm.get_async_model("tool-runner").prompt("go", tools=[plus_two])
    assert await response.text() == "the tool returned 42"
    assert calls == [os.getpid()]


async def test_a_key_never_reaches_argv_environment_files_or_logs(
    isolated_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-process-secret-4711"
    caplog.set_level(logging.DEBUG, logger="llm_all_models_async")
    model = llm.get_async_model("proc-keyed")
    seen = json.loads(await model.prompt("hi", key=secret).text())
    assert seen["key_length"] == len(secret)
    pid = seen["pid"]
    assert secret.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert secret.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    for path in isolated_env.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    with pytest.raises(ValueError) as raised:
        await model.prompt("leak", key=secret).text()
    assert secret not in str(raised.value)
    assert secret not in str(raised.value.__cause__)
    assert "bad key ***" in str(raised.value)
    assert secret not in caplog.text


async def test_worker_fds_are_its_own(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_all_models_async")
    before = [os.fstat(fd) for fd in (1, 2)]
    record = tmp_path / "r"
    model = llm.get_async_model("proc-script")
    text = await model.prompt(
        script_prompt(record, ["print", "hello from the worker"], ["wreck_fds"], ["yield", "ok"])
    ).text()
    assert text == "ok"
    after = [os.fstat(fd) for fd in (1, 2)]
    assert [(s.st_dev, s.st_ino) for s in before] == [(s.st_dev, s.st_ino) for s in after]
    os.write(1, b"")  # still open and writable in the parent
    os.write(2, b"")

    # The worker's fds are read by pump threads of their own: their lines reach the logger
    # independently of the chunks, so wait (bounded) for them.
    def worker_lines() -> set[str]:
        return {r.getMessage().split(": ", 1)[-1] for r in caplog.records}

    eventually(
        lambda: {"hello from the worker", "hello from the worker (stderr)"} <= worker_lines()
    )


async def test_a_model_the_worker_cannot_find() -> None:
    process_models.PARENT_ONLY["enabled"] = True
    try:
        model = llm.get_async_model("proc-parent-only")
        with pytest.raises(lama.WorkerStartError) as raised:
            await model.prompt("x").text()
    finally:
        process_models.PARENT_ONLY["enabled"] = False
    message = str(raised.value)
    assert "'proc-parent-only'" in message and "register no sync model" in message
    assert sys.executable in message


async def test_a_plugin_that_fails_to_import_in_the_worker(tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    module_file = plugin_dir / "vanishing_plugin.py"
    module_file.write_text("VALUE = 1\n")
    sys.path.insert(0, str(plugin_dir))
    try:
        import vanishing_plugin

        llm.plugins.pm.register(vanishing_plugin, name="vanishing-plugin")
        module_file.write_text("raise RuntimeError('cannot load here')\n")
        for cached in plugin_dir.glob("__pycache__/*"):
            cached.unlink()
        with pytest.raises(lama.WorkerStartError) as raised:
            await llm.get_async_model("proc-warm").prompt("x").text()
        message = str(raised.value)
        assert "'vanishing-plugin'" in message and "cannot load here" in message
    finally:
        llm.plugins.pm.unregister(name="vanishing-plugin")
        sys.path.remove(str(plugin_dir))
        sys.modules.pop("vanishing_plugin", None)


async def test_a_worker_that_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3.99")
    with pytest.raises(lama.WorkerStartError) as raised:
        await llm.get_async_model("proc-warm").prompt("x").text()
    message = str(raised.value)
    assert "/nonexistent/python3.99" in message and "FileNotFoundError" in message


async def test_registry_records_the_worker(isolated_env: Path) -> None:
    seen = json.loads(await llm.get_async_model("proc-warm").prompt("x").text())
    # The worker rewrites its record from a thread of its own, soon after the prompt ends.
    eventually(lambda: [r.prompts_served for r in registry.live_records()] == [1])
    (record,) = registry.live_records()
    assert (record.pid, record.model_id, record.parent_pid) == (
        seen["pid"],
        "proc-warm",
        os.getpid(),
    )
    assert record.prompts_served == 1 and not record.busy
    assert (record.rss_bytes() or 0) > 0


async def test_a_plugin_registered_from_main_is_refused_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class ScriptPlugin:
        """A plugin class defined in a script (its module is __main__)."""

    ScriptPlugin.__module__ = "__main__"
    llm.plugins.pm.register(ScriptPlugin, name="script-plugin")
    try:
        with pytest.raises(lama.WorkerStartError) as raised:
            await llm.get_async_model("proc-warm").prompt("x").text()
    finally:
        llm.plugins.pm.unregister(name="script-plugin")
    assert "'script-plugin'" in str(raised.value) and "__main__" in str(raised.value)


async def test_ctrl_c_for_the_parent_does_not_reach_the_model(tmp_path: Path) -> None:
    record = tmp_path / "r"
    model = llm.get_async_model("proc-script")
    pid = int(await model.prompt(script_prompt(record, ["pid"])).text())
    os.kill(pid, signal.SIGINT)  # as a terminal sends it to the whole process group
    again = int(await model.prompt(script_prompt(record, ["pid"])).text())
    assert again == pid
