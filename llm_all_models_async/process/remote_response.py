"""The response a sync ``execute()`` is given in a worker: a real ``llm.Response`` whose writes
go to the parent.

Contract:

* Reads behave as on a sync response that is being produced: ``text()`` and ``str()`` are the
  chunks yielded so far (never a second run of the model), ``prompt``, ``model``,
  ``conversation`` and ``attachments`` are the worker's copies.
* Writes are sent to the parent, in order with the chunks, and applied there to the async
  response: ``set_usage``, ``add_tool_call``, ``set_resolved_model``, and any public attribute
  assigned (``response.response_json = ...``).  They also apply locally, so the model reads
  back what it wrote.
* ``execute_tool_call`` sends the call to the parent, where the tool's Python callable runs,
  and blocks until its ``ToolResult`` (or exception) comes back.
* ``on_done`` callbacks run in the worker, with this response, once the generator finished
  without error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import llm

Send = Callable[[str, tuple[Any, ...], dict[str, Any]], None]
CallTool = Callable[[Any], Any]


class RemoteResponse(llm.Response):
    """See the module contract."""

    _forwarding = False

    def __init__(
        self,
        prompt: Any,
        model: Any,
        stream: bool,
        conversation: Any,
        send_op: Send,
        call_tool: CallTool,
    ) -> None:
        super().__init__(prompt, model, stream, conversation=conversation)
        self._send_op = send_op
        self._call_tool = call_tool
        self._local_done_callbacks: list[Callable[[Any], Any]] = []
        self._forwarding = True

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if self._forwarding and not name.startswith("_"):
            self._send_op("setattr", (name, value), {})

    def record(self, chunk: Any) -> None:
        """Note a chunk the model yielded, for ``text()``."""
        if isinstance(chunk, str):
            self._chunks.append(chunk)

    def text(self) -> str:
        return "".join(self._chunks)

    def __str__(self) -> str:
        return self.text()

    def set_usage(self, *args: Any, **kwargs: Any) -> None:
        self._forwarding = False
        try:
            super().set_usage(*args, **kwargs)
        finally:
            self._forwarding = True
        self._send_op("set_usage", args, kwargs)

    def add_tool_call(self, tool_call: Any) -> None:
        super().add_tool_call(tool_call)
        self._send_op("add_tool_call", (self._tool_calls[-1],), {})

    def set_resolved_model(self, model_id: str) -> None:
        self._forwarding = False
        try:
            super().set_resolved_model(model_id)
        finally:
            self._forwarding = True
        self._send_op("set_resolved_model", (model_id,), {})

    def execute_tool_call(self, tool_call: Any) -> Any:
        """Run the tool in the parent (where its callable lives); returns its ``ToolResult``."""
        return self._call_tool(tool_call)

    def on_done(self, callback: Callable[[Any], Any]) -> None:
        self._local_done_callbacks.append(callback)

    def run_done_callbacks(self) -> None:
        self._done = True
        for callback in self._local_done_callbacks:
            callback(self)
