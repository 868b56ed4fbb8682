"""The llm-all-models-async 0.1 wrapper, reproduced to prove the suite catches its defects.

Registered as an llm plugin (``trylast``) with ``LLM_ASYNC_EXCLUDE=*`` switching the real
adapter off.  Its known defects: no ``Options`` (every option fails validation), no
cancellation (the sync generator always runs to the end), the ``AsyncConversation`` handed
to sync code, ``BaseException`` turned into a truncated success, no per-model serialisation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import llm

_executor = ThreadPoolExecutor(max_workers=4)


async def _bridge(run: Any) -> AsyncGenerator[Any, None]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    sentinel = object()
    loop = asyncio.get_event_loop()

    def _run_sync() -> None:
        try:
            for chunk in run():
                loop.call_soon_threadsafe(queue.put_nowait, chunk)
        except Exception as e:
            loop.call_soon_threadsafe(queue.put_nowait, e)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, sentinel)

    loop.run_in_executor(_executor, _run_sync)
    while True:
        item = await queue.get()
        if item is sentinel:
            break
        if isinstance(item, Exception):
            raise item
        yield item


class AsyncModelWrapper(llm.AsyncModel):
    def __init__(self, sync_model: Any) -> None:
        self._sync_model = sync_model
        self.model_id = sync_model.model_id
        self.can_stream = sync_model.can_stream
        self.attachment_types = sync_model.attachment_types
        self.supports_schema = sync_model.supports_schema
        self.supports_tools = sync_model.supports_tools

    def __str__(self) -> str:
        return str(self._sync_model)

    async def execute(
        self, prompt: Any, stream: Any, response: Any, conversation: Any
    ) -> AsyncGenerator[Any, None]:
        def run() -> Any:
            return self._sync_model.execute(prompt, stream, response, conversation)

        async for item in _bridge(run):
            yield item


class AsyncKeyModelWrapper(llm.AsyncKeyModel):
    def __init__(self, sync_model: Any) -> None:
        self._sync_model = sync_model
        self.model_id = sync_model.model_id
        self.can_stream = sync_model.can_stream
        self.attachment_types = sync_model.attachment_types
        self.supports_schema = sync_model.supports_schema
        self.supports_tools = sync_model.supports_tools
        self.needs_key = sync_model.needs_key
        self.key_env_var = sync_model.key_env_var

    def __str__(self) -> str:
        return str(self._sync_model)

    async def execute(
        self, prompt: Any, stream: Any, response: Any, conversation: Any, key: Any = None
    ) -> AsyncGenerator[Any, None]:
        def run() -> Any:
            return self._sync_model.execute(prompt, stream, response, conversation, key=key)

        async for item in _bridge(run):
            yield item


@llm.hookimpl(trylast=True)
def register_models(register: Any, model_aliases: Any) -> None:
    for mwa in model_aliases:
        if mwa.model and not mwa.async_model:
            if isinstance(mwa.model, llm.KeyModel):
                mwa.async_model = AsyncKeyModelWrapper(mwa.model)
            else:
                mwa.async_model = AsyncModelWrapper(mwa.model)
