"""Sync models for the process-isolation tests, registered by hand (as ``fake_models`` is) so
the worker must replicate them; each is driven by its prompt, since it runs in another process.

``proc-script`` follows the JSON steps in its prompt and appends what happened to the file
named by ``record`` (pulls, ``GeneratorExit``, ``finally``, its pid), which the test reads.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llm
from pydantic import Field

import llm_all_models_async

PLUGIN_NAME = "llm-async-process-models"


def register() -> None:
    module = sys.modules[__name__]
    if not llm.plugins.pm.is_registered(module):
        llm.plugins.pm.register(module, name=PLUGIN_NAME)


def script_prompt(record: Path, *steps: Any) -> str:
    """The prompt text that makes ``proc-script`` run ``steps``, recording into ``record``."""
    return json.dumps({"record": str(record), "steps": list(steps)})


def read_record(record: Path) -> list[str]:
    try:
        return record.read_text().splitlines()
    except FileNotFoundError:
        return []


class ProcessModelError(Exception):
    """A model's own exception type, which must reach the parent as itself."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message, code)
        self.code = code


class Unpicklable(Exception):
    """An exception that cannot be rebuilt from its pickle (its __init__ needs two args)."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


def _deep_failure(message: str) -> None:
    raise ProcessModelError(message, code=7)


def _wait_for_file(path: str, timeout: float = 30.0) -> bool:
    """Model-side wait for the test's go-ahead; gives up when the stream is cancelled."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if llm_all_models_async.cancelled() or time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class ProcScript(llm.Model):
    model_id = "proc-script"
    can_stream = True

    def execute(self, prompt, stream, response, conversation) -> Iterator[str]:
        spec = json.loads(prompt.prompt)
        record = open(spec["record"], "a", buffering=1)  # noqa: SIM115 (closed in finally)
        pulled = 0

        def note(text: str) -> None:
            record.write(text + "\n")

        note(f"start pid={os.getpid()}")
        try:
            for step in spec["steps"]:
                kind, args = step[0], step[1:]
                if kind == "yield":
                    pulled += 1
                    note(f"pulled {pulled}")
                    yield args[0]
                elif kind == "endless":
                    while True:
                        pulled += 1
                        note(f"pulled {pulled}")
                        yield args[0]
                elif kind == "wait_file":
                    _wait_for_file(args[0])
                elif kind == "block":
                    read_end, _write_end = os.pipe()
                    note("blocking")
                    os.read(read_end, 1)  # nobody ever writes: stuck in C for good
                elif kind == "until_cancelled":
                    note("polling cancelled")
                    while not llm_all_models_async.cancelled():
                        time.sleep(0.005)
                    note("saw cancelled")
                    return
                elif kind == "exit":
                    sys.stderr.write("dying now\n")
                    sys.stderr.flush()
                    os._exit(args[0])
                elif kind == "segv":
                    sys.stderr.write("about to segfault\n")
                    sys.stderr.flush()
                    ctypes.string_at(0)
                elif kind == "raise":
                    _deep_failure(args[0])
                elif kind == "raise_unpicklable":
                    raise Unpicklable("left", "right")
                elif kind == "raise_with":
                    raise ValueError(args[0])
                elif kind == "print":
                    print(args[0], flush=True)
                    sys.stderr.write(args[0] + " (stderr)\n")
                    sys.stderr.flush()
                elif kind == "wreck_fds":
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, 1)
                    os.dup2(devnull, 2)
                    os.close(devnull)
                    os.close(1)
                    os.close(2)
                    note("fds wrecked")
                elif kind == "pid":
                    yield str(os.getpid())
                else:
                    raise ValueError(f"unknown step {kind!r}")
        except GeneratorExit:
            note(f"GeneratorExit pid={os.getpid()} after {pulled}")
            raise
        finally:
            note(f"finally pulled={pulled}")
            record.close()


class Warm(llm.Model):
    """Loads its 'weights' lazily on the instance, like llm-mrchatterbox."""

    model_id = "proc-warm"
    loads = 0

    def __init__(self) -> None:
        self._weights: object | None = None

    def execute(self, prompt, stream, response, conversation) -> Iterator[str]:
        if self._weights is None:
            Warm.loads += 1
            self._weights = object()
        yield json.dumps({"pid": os.getpid(), "loads": Warm.loads})


class Inspect(llm.Model):
    """Reports, as one JSON chunk, everything ``execute()`` was given."""

    model_id = "proc-inspect"
    can_stream = True
    supports_schema = True
    supports_tools = True
    attachment_types = {"text/plain", "image/png"}

    class Options(llm.Options):
        temperature: float | None = Field(default=None, ge=0)
        label: str = "none"

    def execute(self, prompt, stream, response, conversation) -> Iterator[str]:
        seen: dict[str, Any] = {
            "pid": os.getpid(),
            "prompt": prompt.prompt,
            "system": prompt.system,
            "fragments": [str(f) for f in prompt.fragments],
            "options": prompt.options.model_dump(),
            "schema": prompt.schema,
            "tools": [
                {"name": t.name, "has_implementation": t.implementation is not None}
                for t in prompt.tools
            ],
            "tool_results": [[r.name, r.output, r.tool_call_id] for r in prompt.tool_results],
            "attachments": [
                {
                    "type": a.type,
                    "path": a.path,
                    "url": a.url,
                    "bytes": len(a.content_bytes()) if (a.path or a.content) else None,
                }
                for a in prompt.attachments
            ],
            "response_prompt": response.prompt.prompt,
        }
        if conversation is not None:
            seen["conversation_id"] = conversation.id
            seen["history"] = [
                {
                    "text": prev.text(),
                    "str": str(prev),
                    "prompt": prev.prompt.prompt,
                    "json": prev.response_json,
                    "tool_calls": [[c.name, c.arguments] for c in prev.tool_calls()],
                }
                for prev in conversation.responses
            ]
        response.response_json = {"inspected": True}
        if prompt.tools:
            response.add_tool_call(
                llm.ToolCall(name=prompt.tools[0].name, arguments={"x": 1}, tool_call_id="c1")
            )
        yield json.dumps(seen)


class SecretKeyed(llm.KeyModel):
    """Needs a key; echoes only whether it got one and where it runs."""

    model_id = "proc-keyed"
    needs_key = "proc-keyed"
    key_env_var = "PROC_KEYED_TEST_KEY"

    def execute(self, prompt, stream, response, conversation, key) -> Iterator[str]:
        if prompt.prompt == "leak":
            raise ValueError(f"bad key {key}")
        yield json.dumps({"pid": os.getpid(), "key_length": len(key or "")})


PARENT_ONLY = {"enabled": False}


class ParentOnly(llm.Model):
    """Registered only while the parent sets a flag in memory: the worker cannot find it."""

    model_id = "proc-parent-only"

    def execute(self, prompt, stream, response, conversation) -> Iterator[str]:
        yield "never in a worker"


class ChattyToolRunner(llm.Model):
    """Streams a chunk, then another once the test has the first, then runs its tool call once
    the test has the second: by then the parent reads this prompt's chunks in batches.  The
    go-aheads are files: the prompt's path with ``.1`` and ``.2`` appended."""

    model_id = "proc-chatty-tools"
    supports_tools = True

    def execute(self, prompt, stream, response, conversation) -> Iterator[str]:
        yield "thinking"
        if not _wait_for_file(prompt.prompt + ".1"):
            raise ProcessModelError("no go-ahead for the second chunk")
        yield ", still"
        if not _wait_for_file(prompt.prompt + ".2"):
            raise ProcessModelError("no go-ahead for the tool call")
        call = llm.ToolCall(name=prompt.tools[0].name, arguments={"x": 40}, tool_call_id="c1")
        yield f"; the tool returned {response.execute_tool_call(call).output}"


@llm.hookimpl
def register_models(register):
    register(ProcScript())
    register(ChattyToolRunner())
    register(Warm())
    register(Inspect())
    register(SecretKeyed())
    if PARENT_ONLY["enabled"]:
        register(ParentOnly())
