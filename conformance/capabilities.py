"""Capabilities of the model under test: derived from the sync model, overridable, with sources."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# name -> how to read it from the sync model
DERIVED = (
    "can_stream",
    "Options",
    "needs_key",
    "key_env_var",
    "supports_tools",
    "supports_schema",
    "attachment_types",
    "supports_conversation",
)
# Capabilities the suite measures or reads from settings rather than from the model.
MEASURED = ("deterministic", "model_concurrency")
NAMES = DERIVED + MEASURED


def _read(model: Any, name: str) -> Any:
    if name == "Options":
        return getattr(model, "Options", None)
    if name == "attachment_types":
        return frozenset(getattr(model, "attachment_types", None) or ())
    if name == "supports_conversation":
        return bool(getattr(model, "supports_conversation", True))
    if name in ("needs_key", "key_env_var"):
        return getattr(model, name, None)
    return bool(getattr(model, name, False))


@dataclass
class Capabilities:
    """Effective capabilities; ``sources[name]`` says where each value came from."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)

    def set(self, name: str, value: Any, source: str) -> None:
        if name not in NAMES:
            raise KeyError(f"unknown capability {name!r}; known: {', '.join(NAMES)}")
        if name == "attachment_types" and value is not None:
            value = frozenset(value)
        self.values[name] = value
        self.sources[name] = source

    def option_fields(self) -> dict[str, Any]:
        options = self.values.get("Options")
        return dict(getattr(options, "model_fields", {}) or {})


def derive(
    sync_model: Any,
    overrides: Mapping[str, tuple[Any, str]] | None = None,
) -> Capabilities:
    """Capabilities of ``sync_model``; ``overrides`` maps name -> (value, source)."""
    caps = Capabilities()
    for name in DERIVED:
        caps.set(name, _read(sync_model, name), "model")
    caps.set("deterministic", None, "to be measured")
    caps.set("model_concurrency", None, "adapter settings")
    for name, (value, source) in (overrides or {}).items():
        caps.set(name, value, source)
    return caps


EXAMPLES = {
    "needs_key": "'my-key-alias'",
    "key_env_var": "'MY_API_KEY'",
    "attachment_types": "{'image/png'}",
    "Options": "MyModel.Options",
}


def how_to_enable(name: str, wanted: Any) -> str:
    shown = EXAMPLES.get(name, repr(wanted))
    return (
        f"set {name} = {shown} on the test class (or capabilities.{name} in the matrix cell) "
        "to run it"
    )


def skip_reason(caps: Capabilities, name: str, wanted: Any = True) -> str:
    """The standard skip text when capability ``name`` does not have the ``wanted`` value."""
    value = caps.values.get(name)
    source = caps.sources.get(name, "model")
    who = "the model declares" if source == "model" else f"{source} sets"
    shown = sorted(value) if isinstance(value, frozenset) else value
    return f"{who} {name}={shown!r}; {how_to_enable(name, wanted)}"
