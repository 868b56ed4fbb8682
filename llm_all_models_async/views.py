"""Sync views of async llm objects, handed to a sync ``execute()`` running on a worker thread.

Sync plugins were written against ``llm.Response`` and ``llm.Conversation``: they call
``prev.text()``, ``str(prev)``, ``response.set_usage(...)``.  Given the async objects they would
get coroutines.  These views give them the sync behaviour, and hold the live async response
only through a weak reference, so a response abandoned by its consumer can be collected (which
closes its stream) even while the worker still runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from typing import Any

import llm


class ResponseGone(RuntimeError):
    """The async response this view stood for was dropped by its consumer."""


class SyncResponseView:
    """What the sync ``execute()`` receives as ``response``: forwards to the async response.

    Writes that llm makes safe from any thread (``add_tool_call``, ``set_usage``,
    ``set_resolved_model``, ``response_json``) go straight through; ``on_done`` and
    ``execute_tool_call``, coroutines on ``AsyncResponse``, are bridged to the event loop.
    """

    def __init__(
        self,
        response: llm.AsyncResponse,
        sync_model: llm.Model | llm.KeyModel,
        conversation: llm.Conversation | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        object.__setattr__(self, "_ref", weakref.ref(response))
        object.__setattr__(self, "model", sync_model)
        object.__setattr__(self, "conversation", conversation)
        object.__setattr__(self, "_loop", loop)

    def _target(self) -> llm.AsyncResponse:
        response = self._ref()
        if response is None:
            raise ResponseGone("the async response was dropped by its consumer")
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target(), name, value)

    def __repr__(self) -> str:
        return f"<SyncResponseView of {self._ref()!r}>"

    # Methods a sync execute() calls on its response --------------------------------------

    def add_tool_call(self, tool_call: Any) -> None:
        self._target().add_tool_call(tool_call)

    def set_usage(self, *args: Any, **kwargs: Any) -> None:
        self._target().set_usage(*args, **kwargs)

    def set_resolved_model(self, model_id: str) -> None:
        self._target().set_resolved_model(model_id)

    def on_done(self, callback: Any) -> None:
        """Run a sync callback, with this view, once the async response completes."""
        response = self._target()

        def call_with_view(_: Any) -> Any:
            return callback(self)

        if response._done:
            callback(self)
        else:
            response.done_callbacks.append(call_with_view)

    def execute_tool_call(self, tool_call: Any) -> Any:
        """Run the async ``execute_tool_call`` on the event loop and wait for its result."""
        coroutine = self._target().execute_tool_call(tool_call)
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def text(self) -> str:
        return "".join(self._target()._chunks)

    def __str__(self) -> str:
        return self.text()


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
        copy = await earlier.to_sync_response()
        copy.model = sync_model
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
