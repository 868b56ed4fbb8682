"""Sync views of async llm objects, handed to a sync ``execute()`` running on a worker thread.

Sync plugins were written against ``llm.Response`` and ``llm.Conversation``: they call
``prev.text()``, ``str(prev)``, ``response.set_usage(...)``.  Given the async objects they would
get coroutines.  These views give them the sync behaviour, and hold the live async response
only through a weak reference, so a response abandoned by its consumer can be collected (which
closes its stream) even while the worker still runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import weakref
from collections.abc import Callable
from typing import Any, cast

import llm

from . import cancellation


class ResponseGone(RuntimeError):
    """The async response this view stood for was dropped by its consumer."""


class StreamStopped(RuntimeError):
    """Raised into a sync ``execute()`` waiting on the event loop when its stream was stopped."""


class SyncResponseView:
    """What the sync ``execute()`` receives as ``response``: forwards to the async response.

    Writes that llm makes safe from any thread (``add_tool_call``, ``set_usage``,
    ``set_resolved_model``, ``response_json``, any attribute) go straight through; ``on_done``
    and ``execute_tool_call``, coroutines on ``AsyncResponse``, are bridged to the event loop.

    As on the sync path, an attribute the model writes reads back as written: ``response.model
    = other`` makes ``response.model`` ``other`` here, and the async response records
    ``other``'s model id (through its async twin, so it stays an async response).  Once the
    consumer has dropped the response, writes are kept on the view only and never raise into
    the model: a ``finally`` block that records usage must not fail because nobody listens.
    """

    def __init__(
        self,
        response: llm.AsyncResponse,
        sync_model: llm.Model | llm.KeyModel,
        conversation: llm.Conversation | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        object.__setattr__(self, "_ref", weakref.ref(response))
        object.__setattr__(self, "_written", {"model": sync_model})
        object.__setattr__(self, "conversation", conversation)
        object.__setattr__(self, "_loop", loop)

    def _target(self) -> llm.AsyncResponse:
        response: llm.AsyncResponse | None = self._ref()
        if response is None:
            raise ResponseGone("the async response was dropped by its consumer")
        return response

    @property
    def model(self) -> Any:
        """The sync model (what ``Response.model`` is on the sync path), or what was written."""
        return self._written["model"]

    def __getattr__(self, name: str) -> Any:
        written: dict[str, Any] = self.__dict__["_written"]
        response = self._ref()
        if response is None and name in written:
            return written[name]
        return getattr(self._target(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._written[name] = value
        response = self._ref()
        if response is None:
            return
        if name == "model":
            value = _async_face(value)
        setattr(response, name, value)

    def __repr__(self) -> str:
        return f"<SyncResponseView of {self._ref()!r}>"

    # Methods a sync execute() calls on its response --------------------------------------

    def add_tool_call(self, tool_call: Any) -> None:
        response = self._ref()
        if response is not None:
            response.add_tool_call(tool_call)

    def set_usage(self, *args: Any, **kwargs: Any) -> None:
        response = self._ref()
        if response is not None:
            response.set_usage(*args, **kwargs)

    def set_resolved_model(self, model_id: str) -> None:
        self.__setattr__("resolved_model", model_id)

    def on_done(self, callback: Callable[[Any], Any]) -> None:
        """Run a sync callback, with this view, once the async response completes."""
        response = self._ref()
        if response is None:
            return  # it never completes now

        def call_with_view(_: Any) -> Any:
            return callback(self)

        if response._done:
            callback(self)
        else:
            response.done_callbacks.append(call_with_view)

    def execute_tool_call(self, tool_call: llm.ToolCall) -> llm.ToolResult:
        """Run the async ``execute_tool_call`` on the event loop and wait for its result.

        The wait ends, with :class:`StreamStopped`, as soon as the stream is stopped (the
        consumer cancelled, timed out or dropped the response); the tool call is cancelled.
        """
        coroutine = self._target().execute_tool_call(tool_call)
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        unregister = cancellation.on_stop(future.cancel)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise StreamStopped("the stream was stopped while a tool call ran") from None
        finally:
            unregister()

    def text(self) -> str:
        response = self._ref()
        if response is None:
            return ""
        return "".join(response._chunks)

    def __str__(self) -> str:
        return self.text()


def _async_face(model: Any) -> Any:
    """What the async response should hold for a model written to ``response.model``."""
    if isinstance(model, (llm.Model, llm.KeyModel)):
        from .twins import make_twin  # twins imports this module

        return make_twin(model)
    return model


def _conversation_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(llm.Conversation)}


async def sync_conversation(
    conversation: llm.AsyncConversation | None,
    sync_model: llm.Model | llm.KeyModel,
    current: llm.AsyncResponse | None = None,
) -> llm.Conversation | None:
    """A sync ``Conversation`` with the same id holding sync copies of the finished turns."""
    if conversation is None:
        return None
    responses = []
    for earlier in list(conversation.responses):
        if earlier is current:
            continue
        # An AsyncConversation holds AsyncResponses (llm types the list by their base class).
        copy = await cast(llm.AsyncResponse, earlier).to_sync_response()
        copy.model = sync_model  # type: ignore[assignment]  # llm types it Model; KeyModel works
        responses.append(copy)
    values: dict[str, Any] = {"model": sync_model, "responses": responses}
    fields = _conversation_fields()
    for name in fields - {"model", "responses", "before_call", "after_call"}:
        if hasattr(conversation, name):
            values[name] = getattr(conversation, name)
    view = llm.Conversation(**values)
    for copy in responses:
        copy.conversation = view
    return view
