"""How a twin's prompt is served: the one contract the thread bridge and worker processes keep.

A twin does not care what runs its sync model.  It hands a :class:`StreamRequest` to
:func:`open_stream` and reads the :class:`Stream` it gets back.  Every server promises:

* ``await open(request)`` waits, first come first served and within the queue and response
  timeouts, for the right to run the model, then starts it; cancelling that wait leaves the
  line cleanly and starts nothing.
* ``await stream.next_batch()`` returns every chunk produced and not yet taken (at least one),
  in the order the model yielded them; at most ``LLM_ASYNC_BUFFER`` chunks are ever out of the
  model and not yet consumed.  It raises the model's exception (after the chunks before it),
  an :class:`~llm_all_models_async.errors.AdapterTimeoutError`, or ``StopAsyncIteration``.
* ``stream.stop()`` returns at once; the model's generator is then closed where it runs,
  within one chunk, and the model's slot is freed once it is closed.
* Writes the sync ``execute()`` makes on its response (usage, tool calls, ``response_json``,
  the resolved model) reach the async response through ``request.response``.

Servers are chosen by the ``isolation`` setting; ``thread`` (:mod:`.thread_server`) is the
default, ``process`` (:mod:`.process.server`) runs the model in warm worker processes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol

import llm

from .settings import Settings
from .views import SyncResponseView


class StreamRequest(NamedTuple):
    """Everything one prompt needs, whatever runs it.

    A named tuple: one is built per prompt on the way to its first chunk, where a frozen
    dataclass's ``__init__`` cost several times as much.
    """

    sync_model: llm.Model | llm.KeyModel
    model_id: str
    prompt: llm.Prompt
    stream: bool
    response: SyncResponseView
    conversation: llm.Conversation | None
    key: str | None
    passes_key: bool  # a KeyModel's execute() takes ``key=``
    config: Settings
    started_at: float

    def execute(self) -> Any:
        """Call the sync ``execute()`` (on whatever thread or process serves the request)."""
        extra = {"key": self.key} if self.passes_key else {}
        # The view stands in for llm.Response: it offers what a sync execute() uses of one.
        return self.sync_model.execute(
            self.prompt,
            self.stream,
            self.response,  # type: ignore[arg-type]
            self.conversation,
            **extra,
        )


class Stream(Protocol):
    """The consumer's handle on one running prompt (see the module contract)."""

    async def next_batch(self) -> list[Any]: ...

    def stop(self) -> None: ...


Server = Callable[[StreamRequest], Awaitable[Stream]]


def server_for(isolation: str) -> Server:
    """The server of one ``isolation`` value (imported on first use: each pulls in its own
    machinery, and a thread-only process never loads the process one)."""
    if isolation == "thread":
        from .thread_server import serve

        return serve
    if isolation == "process":
        from .process.server import serve as serve_in_process

        return serve_in_process
    raise ValueError(f"no server for isolation {isolation!r}; known: 'thread', 'process'")


async def open_stream(request: StreamRequest) -> Stream:
    """Start ``request`` on the server its model's ``isolation`` setting names."""
    serve = server_for(getattr(request.config, "isolation", "thread"))
    return await serve(request)
