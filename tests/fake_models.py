"""Sync test models, registered as an llm plugin by ``conftest.py``; each records what happened.

``probe`` follows a :class:`Script` chosen by the prompt text, so one model covers slow first
chunks, blocking steps, mid-stream exceptions, endless streams and cancellation polling.
The other models each stand for one kind of real plugin behaviour.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import llm
from pydantic import Field

import llm_all_models_async

# --------------------------------------------------------------------------- script steps


@dataclass
class Wait:
    """Block (bounded) on an event before going on, like a slow model."""

    event: threading.Event
    timeout: float = 30.0


@dataclass
class Raise:
    exc: BaseException


@dataclass
class UntilCancelled:
    """Loop until the adapter says the stream was cancelled, as a long blocking loop would."""

    checked: threading.Event = field(default_factory=threading.Event)


@dataclass
class Endless:
    """Yield ``chunk`` forever."""

    chunk: str = "x"


@dataclass
class Call:
    """Run a callable (given the response view) and go on."""

    fn: Callable[[Any], None]


@dataclass
class Script:
    """What ``probe`` yields for one prompt, and a record of how it was driven."""

    steps: list[Any]
    ignore_close: bool = False
    threads: list[str] = field(default_factory=list)
    pulled: int = 0
    closed_on: str | None = None
    generator_exit: int = 0
    finally_runs: int = 0
    started: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    pulled_event: threading.Event = field(default_factory=threading.Event)
    context_value: Any = None


SCRIPTS: dict[str, Script] = {}
_script_ids = iter(range(1_000_000_000))


def script(*steps: Any, ignore_close: bool = False) -> tuple[str, Script]:
    """Register a script; returns the prompt text that selects it."""
    name = f"script-{next(_script_ids)}"
    SCRIPTS[name] = Script(list(steps), ignore_close=ignore_close)
    return name, SCRIPTS[name]


REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


class Probe(llm.Model):
    model_id = "probe"
    can_stream = True

    def execute(self, prompt, stream, response, conversation) -> Iterator[Any]:
        run = SCRIPTS[prompt.prompt]
        run.context_value = REQUEST_ID.get()
        run.started.set()
        try:
            for step in run.steps:
                run.threads.append(threading.current_thread().name)
                if isinstance(step, Wait):
                    if not step.event.wait(step.timeout):
                        raise RuntimeError("test script step was never released")
                elif isinstance(step, Raise):
                    raise step.exc
                elif isinstance(step, UntilCancelled):
                    while not llm_all_models_async.cancelled():
                        step.checked.set()
                        threading.Event().wait(0.005)  # a model's own polling interval
                    return
                elif isinstance(step, Call):
                    step.fn(response)
                elif isinstance(step, Endless):
                    while True:
                        run.pulled += 1
                        run.pulled_event.set()
                        yield step.chunk
                else:
                    run.pulled += 1
                    run.pulled_event.set()
                    yield step
        except GeneratorExit:
            run.generator_exit += 1
            run.closed_on = threading.current_thread().name
            if run.ignore_close:
                yield "ignored close"
            raise
        finally:
            run.finally_runs += 1
            run.finished.set()


class OptionsModel(llm.Model):
    """Declares Options with a validator, as llm-markov does."""

    model_id = "options-model"
    can_stream = True

    class Options(llm.Options):
        length: int | None = Field(default=3, description="words to produce", ge=1)
        word: str = "word"

    def execute(self, prompt, stream, response, conversation):
        for _ in range(prompt.options.length or 3):
            yield prompt.options.word + " "


class NeedsKey(llm.KeyModel):
    model_id = "needs-key"
    needs_key = "needs-key-service"
    key_env_var = "NEEDS_KEY_TEST_KEY"
    can_stream = True

    def execute(self, prompt, stream, response, conversation, key):
        yield f"key={key}"


class History(llm.Model):
    """Rebuilds history the way 29 of 47 real sync plugins do: ``prev.text()`` and friends."""

    model_id = "history"
    can_stream = True
    seen: list[dict[str, Any]] = []

    def execute(self, prompt, stream, response, conversation):
        record: dict[str, Any] = {
            "conversation": conversation,
            "conversation_id": getattr(conversation, "id", None),
        }
        if conversation is not None:
            record["texts"] = [prev.text() for prev in conversation.responses]
            record["strs"] = [str(prev) for prev in conversation.responses]
            record["prompts"] = [prev.prompt.prompt for prev in conversation.responses]
            record["json"] = [prev.response_json for prev in conversation.responses]
            record["tool_calls"] = [prev.tool_calls() for prev in conversation.responses]
        History.seen.append(record)
        response.response_json = {"turn": len(History.seen)}
        yield f"reply to {prompt.prompt}"


class NoConversation(llm.Model):
    model_id = "no-conversation"
    supports_conversation = False

    def execute(self, prompt, stream, response, conversation):
        yield "single turn"


class ResponseApi(llm.Model):
    """Uses every response method a sync plugin may call from ``execute()``."""

    model_id = "response-api"
    supports_tools = True
    can_stream = True
    done: list[Any] = []

    def execute(self, prompt, stream, response, conversation):
        response.set_usage(input=3, output=5, details={"cached": 1})
        response.response_json = {"raw": prompt.prompt}
        response.set_resolved_model("response-api-resolved")
        response.on_done(lambda r: ResponseApi.done.append(r.text()))
        if prompt.tool_results:
            yield "tool said " + ", ".join(r.output for r in prompt.tool_results)
            return
        if prompt.tools:
            response.add_tool_call(
                llm.ToolCall(name=prompt.tools[0].name, arguments={"x": 2}, tool_call_id="t1")
            )
            yield "calling a tool"
            return
        yield "plain"


class ToolRunner(llm.Model):
    """Runs its own tool call from inside ``execute()`` (``response.execute_tool_call``, 0.32+)."""

    model_id = "tool-runner"
    supports_tools = True

    outcomes: list[str] = []

    def execute(self, prompt, stream, response, conversation):
        call = llm.ToolCall(name=prompt.tools[0].name, arguments={"x": 40}, tool_call_id="r1")
        try:
            result = response.execute_tool_call(call)
        except BaseException as error:
            ToolRunner.outcomes.append(type(error).__name__)
            raise
        ToolRunner.outcomes.append("returned")
        yield f"the tool returned {result.output}"


class SelfKeyed(llm.Model):
    """A plain Model that declares a key and resolves it itself, as many API plugins do."""

    model_id = "self-keyed"
    needs_key = "self-keyed-test"
    key_env_var = "SELF_KEYED_TEST_KEY"

    def execute(self, prompt, stream, response, conversation):
        yield f"key={self.get_key()}"


class RerouteTarget(llm.Model):
    model_id = "rerouting-target"

    def execute(self, prompt, stream, response, conversation):
        yield "target"


class Rerouting(llm.Model):
    """Writes ``response.model`` and ``resolved_model`` after its last chunk (a router), and
    records usage in ``finally`` even when its consumer is gone."""

    model_id = "rerouting"
    seen: list[tuple[str, str]] = []
    late_errors: list[str] = []
    closed = threading.Event()

    def execute(self, prompt, stream, response, conversation):
        if prompt.prompt == "late":
            try:
                while True:
                    yield "first"
            finally:
                try:
                    response.resolved_model = "late"
                    response.set_usage(input=1, output=1)
                    response.response_json = {"late": True}
                    response.model = RerouteTarget()
                except Exception as error:
                    Rerouting.late_errors.append(repr(error))
                Rerouting.closed.set()
        yield "routed"
        response.model = RerouteTarget()
        response.resolved_model = "rerouting-resolved"
        Rerouting.seen.append((response.model.model_id, response.resolved_model))


class LazyLoad(llm.Model):
    """Loads a shared resource lazily with no lock, as llm-mrchatterbox does."""

    model_id = "lazy-load"
    loads = 0
    gate: threading.Event | None = None
    _loaded: Any = None

    def execute(self, prompt, stream, response, conversation):
        if LazyLoad._loaded is None:
            LazyLoad.loads += 1
            if LazyLoad.gate is not None:
                LazyLoad.gate.wait(10)
            LazyLoad._loaded = object()
        yield "loaded"


class ThreadBound(llm.Model):
    """Works only on the thread that first loaded it, like MLX streams on Apple GPUs."""

    model_id = "thread-bound"
    owner: int | None = None

    def execute(self, prompt, stream, response, conversation):
        me = threading.get_ident()
        if ThreadBound.owner is None:
            ThreadBound.owner = me
        if ThreadBound.owner != me:
            raise RuntimeError("There is no Stream(gpu, 0) in current thread")
        yield "ok"


class NativeAsync(llm.AsyncModel):
    """A native async model: the adapter must leave it alone."""

    model_id = "native-async"

    async def execute(self, prompt, stream, response, conversation):
        yield "native"


class NativeSync(llm.Model):
    model_id = "native-async"

    def execute(self, prompt, stream, response, conversation):
        yield "native sync"


@llm.hookimpl
def register_models(register):
    register(Probe(), aliases=("probe-alias",))
    register(OptionsModel())
    register(NeedsKey())
    register(History())
    register(NoConversation())
    register(ResponseApi())
    register(SelfKeyed())
    register(Rerouting())
    register(ToolRunner())
    register(LazyLoad())
    register(ThreadBound())
    register(NativeSync(), NativeAsync())
