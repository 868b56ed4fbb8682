"""The model under test: its sync model, native async model if any, its twin, and prompt runs."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import features


@dataclass
class Models:
    """Everything llm knows about one model id."""

    model_id: str
    sync: Any
    aliases: list[str]
    native: Any | None  # the async model the plugin registered itself, if any
    registered_async: Any | None  # what llm.get_async_model returns for the id, if anything


class NoTwinError(RuntimeError):
    """No adapter supplied an async model for the sync model."""


def _noop_register(*_args: Any, **_kwargs: Any) -> None:
    return None


def registrations() -> list[tuple[Any, Any]]:
    """``(ModelWithAliases entry, async model the plugin itself registered)`` for every model.

    Runs the hook with a recording ``register``: what a plugin passed as ``async_model`` is
    native; what an adapter hook (``trylast``) set on the entry afterwards is not.
    """
    import llm

    entries: list[Any] = []
    native: dict[int, Any] = {}

    def register(model: Any, async_model: Any = None, aliases: Any = None) -> None:
        entry = llm.ModelWithAliases(model, async_model, list(aliases or []))
        native[id(entry)] = async_model
        entries.append(entry)

    llm.load_plugins()
    if features.hook_has_model_aliases():
        llm.plugins.pm.hook.register_models(register=register, model_aliases=entries)
    else:
        llm.plugins.pm.hook.register_models(register=register)
    return [(entry, native[id(entry)]) for entry in entries]


def resolve(model_id: str) -> Models:
    """Look the model up the way a user would; raises llm.UnknownModelError with llm's text."""
    import llm

    sync = llm.get_model(model_id)
    aliases: list[str] = []
    native = None
    for entry, native_async in registrations():
        if entry.model is not None and entry.model.model_id == sync.model_id:
            aliases, native = list(entry.aliases), native_async
            break
    for entry in llm.get_models_with_aliases():
        if entry.model is not None and entry.model.model_id == sync.model_id:
            aliases = list(entry.aliases)
    try:
        registered_async = llm.get_async_model(sync.model_id)
    except llm.UnknownModelError:
        registered_async = None
    return Models(str(sync.model_id), sync, aliases, native, registered_async)


def twin_for(sync_model: Any, aliases: list[str] | None = None) -> Any:
    """Ask the installed adapter hooks for an async model of ``sync_model``, as llm does.

    Used for models that ship a native async model, which llm would never wrap: the entry is
    handed to every ``register_models`` implementation without its native async model.
    """
    import llm

    if not features.hook_has_model_aliases():
        raise NoTwinError("this llm's register_models hook has no model_aliases argument")
    entry = llm.ModelWithAliases(sync_model, None, list(aliases or []))
    llm.plugins.pm.hook.register_models(register=_noop_register, model_aliases=[entry])
    if entry.async_model is None:
        raise NoTwinError(f"no adapter supplied an async model for {sync_model.model_id!r}")
    return entry.async_model


def current_twin(models: Models) -> Any:
    """A fresh twin: llm's own lookup for sync-only models, the hook for native ones."""
    import llm

    if models.native is not None:
        return twin_for(models.sync, models.aliases)
    try:
        found = llm.get_async_model(models.model_id)
    except llm.UnknownModelError as error:
        raise NoTwinError(
            f"llm has no async model for {models.model_id!r} ({error}); is the adapter "
            "installed and active, and does LLM_ASYNC_EXCLUDE leave this model alone?"
        ) from None
    return found


def fresh_sync(models: Models) -> Any:
    import llm

    return llm.get_model(models.model_id)


# -- runs ---------------------------------------------------------------------------------


def _event_tuple(event: Any) -> Any:
    if dataclasses.is_dataclass(event):
        data = dataclasses.asdict(event)
        data.pop("provider_metadata", None)
        # Compact: type and chunk always, other fields only when set.
        return tuple(
            (k, v)
            for k, v in data.items()
            if k in ("type", "chunk") or v not in (None, False, 0, "", {})
        )
    return repr(event)


@dataclass
class RunResult:
    """What one prompt produced, in a form that compares across sync and async runs."""

    chunks: list[str] = field(default_factory=list)
    text: str | None = None
    usage: tuple[Any, Any, Any] | None = None
    tool_calls: list[tuple[str, Any]] = field(default_factory=list)
    response_json: Any = None
    events: list[Any] | None = None
    error: BaseException | None = None
    seconds: float = 0.0

    def said(self) -> dict[str, Any]:
        """What the model said: the text and its chunks (what determinism is decided on)."""
        return {"text": self.text, "chunks": self.chunks}

    def comparable(self) -> dict[str, Any]:
        """What must match exactly for a deterministic model.

        The raw response JSON is compared by its keys only: an HTTP model's JSON carries a
        fresh id or timestamp per response, which says nothing about the answer.
        """
        return {
            **self.said(),
            "usage": self.usage,
            "tool calls": self.tool_calls,
            "response_json keys": _json_keys(self.response_json),
            "stream events": self.events,
        }

    def shape(self) -> dict[str, Any]:
        return {
            "has text": bool(self.text),
            "has chunks": bool(self.chunks),
            "usage fields set": None
            if self.usage is None
            else tuple(value is not None for value in self.usage),
            "tool call names": [name for name, _ in self.tool_calls],
            "response_json set": self.response_json is not None,
            "stream event types": None
            if self.events is None
            else sorted(
                {dict(e).get("type", "?") if isinstance(e, tuple) else e for e in self.events}
            ),
        }


def _json_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return sorted(str(key) for key in value)
    return None if value is None else type(value).__name__


def differences(left: dict[str, Any], right: dict[str, Any], names: tuple[str, str]) -> list[str]:
    out = []
    for key in left:
        if left[key] != right.get(key):
            out.append(
                f"{key}: {names[0]} {short(left[key])} != {names[1]} {short(right.get(key))}"
            )
    return out


def short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...]"


def run_sync(
    target: Any, reseed: Callable[[], None], prompt: str | None, **kwargs: Any
) -> RunResult:
    """Run ``target.prompt(prompt, **kwargs)`` on a sync model or conversation."""
    result = RunResult()
    started = time.monotonic()
    try:
        response = target.prompt(prompt, **kwargs)
        reseed()
        result.chunks = list(response)
        result.text = response.text()
        usage = response.usage()
        result.usage = (usage.input, usage.output, usage.details)
        result.tool_calls = [(tc.name, tc.arguments) for tc in response.tool_calls()]
        result.response_json = response.json()
        if features.has_stream_events():
            result.events = [_event_tuple(e) for e in response.stream_events()]
    except BaseException as error:
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        result.error = error
    result.seconds = time.monotonic() - started
    return result


async def run_async(
    target: Any, reseed: Callable[[], None], prompt: str | None, **kwargs: Any
) -> RunResult:
    """Run ``target.prompt(prompt, **kwargs)`` on an async model or conversation."""
    result = RunResult()
    started = time.monotonic()
    try:
        response = target.prompt(prompt, **kwargs)
        reseed()
        async for chunk in response:
            result.chunks.append(chunk)
        result.text = await response.text()
        usage = await response.usage()
        result.usage = (usage.input, usage.output, usage.details)
        result.tool_calls = [(tc.name, tc.arguments) for tc in await response.tool_calls()]
        result.response_json = await response.json()
        if features.has_astream_events():
            result.events = [_event_tuple(e) async for e in response.astream_events()]
    except Exception as error:
        result.error = error
    result.seconds = time.monotonic() - started
    return result
