"""isolation=process: the settings, ``llm async workers`` and no orphans after a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import llm
import process_models
import pytest
from click.testing import CliRunner
from llm.cli import cli
from process_helpers import alive, eventually, stop_all_workers

from llm_all_models_async import settings

process_models.register()


@pytest.fixture(autouse=True)
def process_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LLM_ASYNC_ISOLATION", "process")
    yield
    stop_all_workers()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["async", *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_isolation_is_validated_set_per_model_and_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_ASYNC_ISOLATION")
    assert settings.resolve("proc-warm").isolation == "thread"
    assert run("set", "proc-warm", "isolation", "process")[0] == 0
    assert settings.resolve("proc-warm").isolation == "process"
    code, output = run("set", "proc-warm", "isolation", "fork")
    assert code != 0 and "isolation must be one of 'thread', 'process'" in output
    monkeypatch.setenv("LLM_ASYNC_ISOLATION", "threads")
    with pytest.raises(settings.SettingError, match="LLM_ASYNC_ISOLATION"):
        settings.resolve("proc-warm")
    monkeypatch.setenv("LLM_ASYNC_ISOLATION", "thread")
    code, output = run("models", "--json")
    (row,) = [r for r in json.loads(output) if r["model_id"] == "proc-warm"]
    assert row["settings"]["isolation"] == {"value": "thread", "source": "env"}
    assert row["settings"]["kill_after"]["value"] == 5.0
    assert row["settings"]["worker_idle_timeout"]["value"] == 300.0


async def test_workers_lists_and_stops_live_workers() -> None:
    first = json.loads(await llm.get_async_model("proc-warm").prompt("x").text())
    eventually(
        lambda: [r["prompts_served"] for r in json.loads(run("workers", "--json")[1])] == [1]
    )
    code, output = run("workers", "--json")
    (row,) = json.loads(output)
    assert code == 0
    assert (row["pid"], row["model_id"], row["prompts_served"]) == (first["pid"], "proc-warm", 1)
    assert row["rss_bytes"] > 0 and row["idle_seconds"] >= 0
    code, output = run("workers")
    assert str(first["pid"]) in output and "proc-warm" in output
    code, output = run("workers", "stop", "999999999")
    assert code != 0 and "not a live llm-async worker" in output
    code, output = run("workers", "stop", str(first["pid"]))
    assert code == 0 and f"stopped worker {first['pid']}" in output
    eventually(lambda: not alive(first["pid"]))
    assert json.loads(run("workers", "--json")[1]) == []
    second = json.loads(await llm.get_async_model("proc-warm").prompt("y").text())
    assert second["pid"] != first["pid"]


def test_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    tests_dir = Path(__file__).parent
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, json, os, sys, threading
            sys.path.insert(0, {str(tests_dir)!r})
            os.environ["LLM_ASYNC_ISOLATION"] = "process"
            import llm, process_models
            process_models.register()

            async def main():
                text = await llm.get_async_model("proc-warm").prompt("x").text()
                print(json.loads(text)["pid"], flush=True)
                threading.Event().wait()  # until killed

            asyncio.run(main())
            """
        )
    )
    parent = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        env={**os.environ, "LLM_USER_PATH": str(tmp_path / "user")},
    )
    try:
        assert parent.stdout is not None
        worker_pid = int(parent.stdout.readline())
        assert alive(worker_pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    eventually(lambda: not alive(worker_pid), what="the orphaned worker to exit")


def test_interpreter_exit_does_not_wait_for_workers(tmp_path: Path) -> None:
    """asyncio.run ends and the interpreter exits although a warm worker is alive."""
    tests_dir = Path(__file__).parent
    script = tmp_path / "short.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, json, os, sys
            sys.path.insert(0, {str(tests_dir)!r})
            os.environ["LLM_ASYNC_ISOLATION"] = "process"
            os.environ["LLM_ASYNC_WORKER_IDLE_TIMEOUT"] = "none"
            import llm, process_models
            process_models.register()

            async def main():
                text = await llm.get_async_model("proc-warm").prompt("x").text()
                print(json.loads(text)["pid"], flush=True)

            asyncio.run(main())
            """
        )
    )
    finished = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "LLM_USER_PATH": str(tmp_path / "user")},
    )
    assert finished.returncode == 0, finished.stderr
    worker_pid = int(finished.stdout.split()[0])
    eventually(lambda: not alive(worker_pid), what="the worker to exit")
