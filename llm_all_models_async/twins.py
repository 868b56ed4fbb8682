"""Async twins: ``AsyncModel``/``AsyncKeyModel`` faces of a sync model, run through the bridge.

A twin is rebuilt on every model lookup (llm re-runs ``register_models`` each time), so it
holds nothing but its sync model; limiters and dedicated threads live in module registries
keyed by the model's identity.  Everything the sync model declares is read through from it:
the attributes llm's base model class defines (whatever the installed llm version has, so
``supports_conversation`` on 0.36 or a future flag come along without a code change), and any
other attribute through ``__getattr__``.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncGenerator
from typing import Any

import llm
from llm.models import _BaseModel

from . import settings
from .identity import model_key as model_key  # re-exported: tests and tools key limits by it
from .serving import StreamRequest, open_stream
from .views import SyncResponseView, sync_conversation

# Attributes a twin answers itself rather than reading from the sync model.
_OWN = frozenset({"model_id", "key"})


def _declared_attributes() -> list[str]:
    """Public data attributes and properties llm's base model class declares."""
    names: set[str] = set()
    for cls in _BaseModel.__mro__:
        if cls is object:
            continue
        for name, value in vars(cls).items():
            if name.startswith("_") or name in _OWN:
                continue
            if callable(value) and not isinstance(value, type):
                continue  # methods: the twin has its own async ones
            names.add(name)
    return sorted(names)


def _mirror(name: str) -> property:
    def get(self: Any) -> Any:
        overrides = self.__dict__.get("_overrides", {})
        if name in overrides:
            return overrides[name]
        return getattr(self.sync_model, name)

    def set_(self: Any, value: Any) -> None:
        self.__dict__.setdefault("_overrides", {})[name] = value

    return property(get, set_, doc=f"``{name}`` of the sync model.")


class _TwinMixin:
    """Shared behaviour of both twin classes."""

    sync_model: llm.Model | llm.KeyModel

    def __init__(self, sync_model: llm.Model | llm.KeyModel) -> None:
        self.sync_model = sync_model
        self.model_id = sync_model.model_id

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes the twin lacks: fall through to the sync model.
        if name == "sync_model":
            raise AttributeError(name)
        return getattr(self.sync_model, name)

    def _key_override(self) -> str | None:
        """A key set on the twin itself (``twin.key = ...``), if any."""
        key: str | None = self.__dict__.get("_overrides", {}).get("key")
        return key

    @property
    def key(self) -> str | None:
        if "key" in self.__dict__.get("_overrides", {}):
            return self._key_override()
        return self.sync_model.key

    @key.setter
    def key(self, value: str | None) -> None:
        self.__dict__.setdefault("_overrides", {})["key"] = value

    def get_key(self, explicit_key: str | None = None) -> str | None:
        """Resolve keys exactly as the sync model does (plugins may override ``get_key``)."""
        key = self._key_override()
        if key is not None:
            return key
        return self.sync_model.get_key(explicit_key)

    def _model_with_key(self) -> llm.Model | llm.KeyModel:
        """The sync model to run, carrying a key set on the twin (``twin.key = ...``).

        A ``KeyModel`` receives the key as an argument (llm resolves it through
        :meth:`get_key`).  A plain ``Model`` that declares ``needs_key`` resolves it itself
        with ``self.get_key()``, which reads ``self.key``: it runs on a shallow copy with the
        key set, so the shared instance (and other prompts running on it) are untouched.
        """
        sync_model = self.sync_model
        key = self._key_override()
        if key is None or isinstance(sync_model, llm.KeyModel) or sync_model.key == key:
            return sync_model
        keyed = copy.copy(sync_model)
        keyed.key = key
        return keyed

    def __str__(self) -> str:
        return str(self.sync_model)

    def __repr__(self) -> str:
        return f"<async twin of {self.sync_model!r}>"

    async def _run(
        self,
        prompt: llm.Prompt,
        stream: bool,
        response: llm.AsyncResponse,
        conversation: llm.AsyncConversation | None,
        extra: dict[str, Any],
    ) -> AsyncGenerator[Any, None]:
        started_at = time.monotonic()
        sync_model = self._model_with_key()
        model_id = str(sync_model.model_id)
        config = settings.resolve(model_id)
        loop = asyncio.get_running_loop()
        history = await sync_conversation(conversation, sync_model, response)
        view = SyncResponseView(response, sync_model, history, loop)
        # From here on only the weak view refers to the response, so a response its consumer
        # drops can be collected, which closes this generator and stops the worker.
        del response
        request = StreamRequest(
            sync_model=sync_model,
            model_id=model_id,
            prompt=prompt,
            stream=stream,
            response=view,
            conversation=history,
            key=extra.get("key"),
            passes_key="key" in extra,
            config=config,
            started_at=started_at,
        )
        del extra
        handle = await open_stream(request)
        try:
            while True:
                try:
                    batch = await handle.next_batch()
                except StopAsyncIteration:
                    return
                for item in batch:
                    if item is None:
                        raise AssertionError(
                            f"model {model_id!r} yielded None; llm needs str or StreamEvent chunks"
                        )
                    yield item
        finally:
            handle.stop()


class AsyncTwin(_TwinMixin, llm.AsyncModel):
    """The async twin of a sync ``llm.Model``."""

    # A plain function returning the async generator, not a generator itself: a wrapping
    # generator frame would keep ``response`` alive and cost a second hop per chunk.
    def execute(
        self,
        prompt: llm.Prompt,
        stream: bool,
        response: llm.AsyncResponse,
        conversation: llm.AsyncConversation | None,
    ) -> AsyncGenerator[Any, None]:
        return self._run(prompt, stream, response, conversation, {})


class AsyncKeyTwin(_TwinMixin, llm.AsyncKeyModel):
    """The async twin of a sync ``llm.KeyModel``: the key resolved by llm is passed through."""

    def execute(
        self,
        prompt: llm.Prompt,
        stream: bool,
        response: llm.AsyncResponse,
        conversation: llm.AsyncConversation | None,
        key: str | None,
    ) -> AsyncGenerator[Any, None]:
        return self._run(prompt, stream, response, conversation, {"key": key})


for _name in _declared_attributes():
    if _name not in vars(_TwinMixin):
        _mirrored = _mirror(_name)
        setattr(AsyncTwin, _name, _mirrored)
        setattr(AsyncKeyTwin, _name, _mirrored)


def make_twin(sync_model: llm.Model | llm.KeyModel) -> AsyncTwin | AsyncKeyTwin:
    """The twin class that matches the sync model's calling convention."""
    if isinstance(sync_model, llm.KeyModel):
        return AsyncKeyTwin(sync_model)
    return AsyncTwin(sync_model)


def is_twin(model: Any) -> bool:
    return isinstance(model, _TwinMixin)
