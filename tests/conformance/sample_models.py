"""Models for testing the conformance suite itself: one well-behaved, several torture models.

Registered as an llm plugin inside pytester runs (see ``conftest.py``).  Each torture model
breaks exactly one contract the suite checks, the way real plugins do:

* ``torture-type``: its mid-stream error loses its type off the main thread (error
  translation that depends on the thread, as with ``signal``-based timeouts).
* ``torture-ignore-close``: its generator catches ``GeneratorExit`` and keeps yielding.
* ``torture-reorder``: its chunks come out reordered when it runs off the main thread
  (thread-local buffering).
* ``torture-stdout``: redirects fd 1 with ``os.dup2`` while generating and restores it in the
  wrong order when two generations overlap (gpt4all / llama.cpp style).
* ``torture-env``: sets an environment variable and the root logger's level while generating
  and puts them back at the end (process-wide state a thread shares).
* ``torture-stateful``: after a generation that did not finish (closed or failed) its next
  answer starts with ``[dirty]`` (a shared cache left half-written, as with a ``Llama`` object).
* ``torture-seed-chain``: each instance's answer depends on its previous answers (fresh
  instances agree), as with llama-cpp-python's seed chain on a kept ``Llama``.
* ``torture-exit`` and ``torture-segfault``: abort at interpreter exit / crash with SIGSEGV,
  only in a process without pytest (the suite's child interpreters), as native libraries do.

And well-behaved ones for the verdicts: ``conformance-sampling`` (temperature > 0, random
words), ``conformance-fresh-id`` (deterministic text, a fresh id in its response JSON),
``conformance-required-option`` (an Options field without default), ``conformance-slow-load``
(a load before the first chunk longer than the suite's bounds, for process isolation).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import random
import signal
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import llm
from pydantic import field_validator

KEY_ENV_VAR = "CONFORMANCE_GOOD_KEY"
FAIL_PROMPT = "fail please"
TOOL_PROMPT = "please use the tool"
RESOLVED_MODEL = "conformance-good-2026-01"


class GoodModelError(Exception):
    """The good model's own error for FAIL_PROMPT."""


class StreamBroken(Exception):
    """torture-type's error on the main thread."""


def words(prompt: Any) -> list[str]:
    return [word.upper() + " " for word in (prompt.prompt or "empty").split()]


class GoodOptions(llm.Options):
    repeat: int | None = None

    @field_validator("repeat")
    @classmethod
    def positive(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("repeat must be >= 1")
        return value


class Good(llm.KeyModel):
    """Deterministic, streaming, keyed, tools, schema, attachments, conversations."""

    model_id = "conformance-good"
    needs_key = "conformance-good"
    key_env_var = KEY_ENV_VAR
    can_stream = True
    supports_tools = True
    supports_schema = True
    attachment_types = frozenset({"image/png"})
    Options = GoodOptions

    def execute(
        self, prompt: Any, stream: bool, response: Any, conversation: Any, key: str | None = None
    ) -> Iterator[str]:
        if prompt.prompt == FAIL_PROMPT:
            yield "partial "
            raise GoodModelError("asked to fail")
        history = [previous.text() for previous in conversation.responses] if conversation else []
        if prompt.tool_results:
            yield f"the tool said {prompt.tool_results[0].output}"
            return
        if prompt.prompt == TOOL_PROMPT:
            response.add_tool_call(
                llm.ToolCall(name="conformance_multiply", arguments={"a": 6, "b": 7})
            )
            yield "calling the tool"
            return
        if prompt.schema:
            yield json.dumps({"name": "Rex", "age": 3})
            return
        if hasattr(response, "set_resolved_model"):
            response.set_resolved_model(RESOLVED_MODEL)  # what `llm logs` shows as resolved
        # Read defensively, so that an adapter without Options (0.1) still streams.
        out = words(prompt) * (getattr(prompt.options, "repeat", None) or 1)
        out.append(f"[turn {len(history) + 1}, {sum(len(h) for h in history)} chars before]")
        for attachment in prompt.attachments:
            out.append(f" [{attachment.resolve_type()} {len(attachment.content_bytes())} bytes]")
        response.set_usage(input=len(words(prompt)), output=len(out))
        yield from out


class GoodSingleTurn(Good):
    model_id = "conformance-single-turn"
    supports_conversation = False


class TortureType(llm.Model):
    model_id = "torture-type"
    can_stream = True

    def execute(self, prompt: Any, stream: bool, response: Any, conversation: Any) -> Iterator[str]:
        yield from words(prompt)[:1]
        if prompt.prompt == FAIL_PROMPT:
            error = StreamBroken("upstream closed after 1 chunk")
            if threading.current_thread() is not threading.main_thread():
                raise RuntimeError(str(error))  # the type is lost off the main thread
            raise error
        yield from words(prompt)[1:]


class TortureIgnoreClose(llm.Model):
    model_id = "torture-ignore-close"
    can_stream = True

    def execute(self, prompt: Any, stream: bool, response: Any, conversation: Any) -> Iterator[str]:
        chunks = words(prompt) * 4
        index = 0
        while index < len(chunks):
            with contextlib.suppress(GeneratorExit):  # ignores close(), goes on yielding
                yield chunks[index]
            index += 1


class TortureReorder(llm.Model):
    model_id = "torture-reorder"
    can_stream = True

    def execute(self, prompt: Any, stream: bool, response: Any, conversation: Any) -> Iterator[str]:
        chunks = words(prompt)
        if threading.current_thread() is not threading.main_thread():
            for index in range(0, len(chunks) - 1, 2):
                chunks[index], chunks[index + 1] = chunks[index + 1], chunks[index]
        yield from chunks


_stdout_lock = threading.Lock()
_inside: list[object] = []
# Set once two runs overlapped, until every run has left: like a plugin whose saved copy of
# fd 1 is the /dev/null of another run, every exit then "restores" /dev/null.
_lost_track = [False]
# A first run waits (briefly) for a second one while fd 1 is redirected, so the overlap the
# hazard needs happens whenever the adapter lets two run at once; a lone run goes on after it.
_second_entered = threading.Condition(_stdout_lock)


class TortureStdout(llm.Model):
    """Silences fd 1 while generating; once two runs overlap, fd 1 is left on /dev/null."""

    model_id = "torture-stdout"
    can_stream = True

    def execute(self, prompt: Any, stream: bool, response: Any, conversation: Any) -> Iterator[str]:
        me = object()
        with _stdout_lock:
            if _inside:
                _lost_track[0] = True
            _inside.append(me)
            _second_entered.notify_all()
            saved = os.dup(1)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.close(devnull)
        try:
            with _stdout_lock:
                if len(_inside) == 1:
                    _second_entered.wait_for(lambda: len(_inside) > 1, timeout=0.5)
            yield from words(prompt)
        finally:
            with _stdout_lock:
                _inside.remove(me)
                if not _lost_track[0]:
                    os.dup2(saved, 1)
                if not _inside:
                    _lost_track[0] = False
            os.close(saved)


ENV_MARK = "CONFORMANCE_TORTURE_ENV"


class TortureEnv(llm.Model):
    """Sets an environment variable and the root logger's level while it generates."""

    model_id = "torture-env"
    can_stream = True

    def execute(self, prompt: Any, stream: bool, response: Any, conversation: Any) -> Iterator[str]:
        level = logging.root.level
        os.environ[ENV_MARK] = "generating"
        logging.root.setLevel(logging.CRITICAL)
        try:
            yield from words(prompt)
        finally:
            os.environ.pop(ENV_MARK, None)
            logging.root.setLevel(level)


_dirty = [False]


class TortureStateful(llm.Model):
    """Deterministic, but an unfinished generation leaves its mark on the next answer."""

    model_id = "torture-stateful"
    can_stream = True

    def execute(self, prompt: Any, stream: bool, response: Any, conversation: Any) -> Iterator[str]:
        chunks = (["[dirty] "] if _dirty[0] else []) + words(prompt)
        _dirty[0] = True  # until this generation finishes
        yield from chunks[:1]
        if prompt.prompt == FAIL_PROMPT:
            raise GoodModelError("asked to fail")
        yield from chunks[1:]
        _dirty[0] = False


class TortureSeedChain(llm.Model):
    """Each instance's answer depends on how many it gave before (llama-cpp-python derives each
    completion's seed from the previous one on a kept ``Llama``); fresh instances agree."""

    model_id = "torture-seed-chain"
    can_stream = True

    def __init__(self) -> None:
        self.completed = 0

    def execute(self, prompt: Any, stream: bool, response: Any, conversation: Any) -> Iterator[str]:
        yield from words(prompt)
        yield f"[{self.completed}]"
        self.completed += 1


def _in_suite_child() -> bool:
    """True in the suite's child interpreters (they do not import pytest)."""
    return "pytest" not in sys.modules


class TortureExit(llm.Model):
    """Answers, then aborts the interpreter at exit, like native worker threads left running."""

    model_id = "torture-exit"
    can_stream = True

    def execute(self, prompt: Any, stream: bool, response: Any, conversation: Any) -> Iterator[str]:
        if _in_suite_child():
            atexit.register(os.abort)
        yield from words(prompt)


class TortureSegfault(llm.Model):
    """Crashes its process with SIGSEGV, as a misbuilt native library does."""

    model_id = "torture-segfault"
    can_stream = True

    def execute(self, prompt: Any, stream: bool, response: Any, conversation: Any) -> Iterator[str]:
        if _in_suite_child():
            os.kill(os.getpid(), signal.SIGSEGV)
        yield from words(prompt)


class SamplingOptions(llm.Options):
    temperature: float = 0.7


class Sampling(llm.Model):
    """Samples with its own random generator: every answer differs."""

    model_id = "conformance-sampling"
    can_stream = True
    Options = SamplingOptions

    def execute(self, prompt: Any, stream: bool, response: Any, conversation: Any) -> Iterator[str]:
        sampler = random.Random()
        pool = words(prompt)
        for _ in range(len(pool)):
            yield sampler.choice(pool)


class FreshId(llm.Model):
    """Says the same every time; its response JSON carries a fresh id, like an HTTP API's."""

    model_id = "conformance-fresh-id"
    can_stream = True

    def execute(self, prompt: Any, stream: bool, response: Any, conversation: Any) -> Iterator[str]:
        response.response_json = {"id": uuid.uuid4().hex, "object": "completion"}
        yield from words(prompt)


class SlowLoad(llm.Model):
    """Loads its weights inside every execute(), before its first chunk, for longer than the
    suite's bounds on the adapter (as llm-gpt4all does on a busy machine): ``LOAD_SECONDS_ENV``
    seconds, 10 by default.  A stop that comes then finds it inside its own work; in process
    isolation LLM_ASYNC_KILL_AFTER ends it.  The suite's preflight (one sync prompt) waits the
    whole load."""

    model_id = "conformance-slow-load"
    can_stream = True
    LOAD_SECONDS_ENV = "CONFORMANCE_SLOW_LOAD_SECONDS"

    def execute(self, prompt: Any, stream: bool, response: Any, conversation: Any) -> Iterator[str]:
        seconds = float(os.environ.get(self.LOAD_SECONDS_ENV, "10"))
        threading.Event().wait(seconds)  # the load nothing can interrupt
        yield from words(prompt)


class RequiredOptions(llm.Options):
    voice: str


class RequiredOption(llm.Model):
    """Its Options class has a field without default: a prompt without it is rejected."""

    model_id = "conformance-required-option"
    can_stream = True
    Options = RequiredOptions

    def execute(self, prompt: Any, stream: bool, response: Any, conversation: Any) -> Iterator[str]:
        yield f"({prompt.options.voice}) "
        yield from words(prompt)


@llm.hookimpl
def register_models(register: Any) -> None:
    register(Good(), aliases=["good-alias"])
    register(GoodSingleTurn())
    register(TortureType())
    register(TortureIgnoreClose())
    register(TortureReorder())
    register(TortureStdout())
    register(TortureEnv())
    register(TortureStateful())
    register(TortureSeedChain())
    register(TortureExit())
    register(TortureSegfault())
    register(Sampling())
    register(FreshId())
    register(RequiredOption())
    register(SlowLoad())
