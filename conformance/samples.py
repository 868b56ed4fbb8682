"""The plugin's samples (prompt, options, tool, schema, attachment...) with generic defaults."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from typing import Any

DEFAULT_PROMPT = "the quick brown fox jumps over the lazy dog and the dog sleeps on"
NO_SUCH_OPTION = "llm_conformance_no_such_option"

# A 1x1 transparent PNG: the smallest valid image for models that take image/png.
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
DEFAULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def conformance_multiply(a: int, b: int) -> int:
    """Multiply two whole numbers."""
    return a * b


def conformance_add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


DEFAULT_TOOLS = (conformance_multiply, conformance_add)


@dataclasses.dataclass
class Samples:
    """What the suite sends to the model; every field can be set on the test class or in a cell.

    ``prompt_options`` go with every prompt (e.g. ``{"length": 10, "delay": 0}`` for a fast
    run); ``options`` are the valid values ``options.valid`` checks; ``seed`` reseeds Python's
    ``random`` before each run (override ``reseed`` on the class for other generators).
    """

    prompt: str = DEFAULT_PROMPT
    system: str | None = None
    prompt_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    options: dict[str, Any] | None = None
    invalid_options: dict[str, Any] | None = None
    failing_prompt: str | None = None
    conversation_prompts: tuple[str, ...] | None = None
    tool: Any = None
    tool_prompt: str = "Use the conformance_multiply tool to multiply 6 by 7, then say the result."
    schema: dict[str, Any] | None = None
    schema_prompt: str = "Invent a dog with a name and an age."
    attachment: Any = None
    attachment_prompt: str = "Describe this file."
    seed: int | None = 20251126
    concurrent_prompts: int = 3

    def turns(self) -> tuple[str, str, str]:
        prompts = tuple(self.conversation_prompts or ())
        defaults = (self.prompt, self.prompt + " again", self.prompt + " once more")
        merged = prompts + defaults[len(prompts) :]
        return merged[0], merged[1], merged[2]

    def the_tools(self) -> list[Any]:
        """The tools offered in ``tools.chain``: the sample (a function, an ``llm.Tool`` or a
        ``"module:name"`` string, or a list of them) or the two default arithmetic tools."""
        chosen = self.tool if self.tool is not None else list(DEFAULT_TOOLS)
        items = chosen if isinstance(chosen, (list, tuple)) else [chosen]
        return [_import_tool(item) if isinstance(item, str) else item for item in items]

    def the_schema(self) -> dict[str, Any]:
        return self.schema if self.schema is not None else DEFAULT_SCHEMA

    def the_attachment(self, attachment_types: frozenset[str]) -> Any:
        """An ``llm.Attachment`` for the model, or None when no sample fits its types."""
        import llm

        sample = self.attachment
        if isinstance(sample, llm.Attachment):
            return sample
        if isinstance(sample, Mapping):
            content = sample.get("content")
            if "content_base64" in sample:
                content = base64.b64decode(sample["content_base64"])
            if isinstance(content, str):
                content = content.encode()
            return llm.Attachment(
                type=sample.get("type"),
                path=sample.get("path"),
                url=sample.get("url"),
                content=content,
            )
        if "image/png" in attachment_types:
            return llm.Attachment(type="image/png", content=TINY_PNG)
        for kind in sorted(attachment_types):
            if kind.startswith("text/"):
                return llm.Attachment(type=kind, content=b"conformance attachment text\n")
        return None


FIELDS = tuple(f.name for f in dataclasses.fields(Samples))


def _import_tool(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise ValueError(f"tool {spec!r} must look like 'package.module:function'")
    import importlib

    return getattr(importlib.import_module(module_name), attribute)


def build(*layers: Mapping[str, Any] | None) -> Samples:
    """Samples from layered mappings (later wins); unknown keys are an error, not ignored."""
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if key not in FIELDS:
                raise ValueError(f"unknown sample {key!r}; known samples: {', '.join(FIELDS)}")
            if value is not None:
                values[key] = value
    if "conversation_prompts" in values:
        values["conversation_prompts"] = tuple(values["conversation_prompts"])
    return Samples(**values)


def derive_valid_options(option_fields: Mapping[str, Any]) -> dict[str, Any]:
    """Explicit values for options that have a simple, non-None default: always valid."""
    chosen: dict[str, Any] = {}
    for name, info in option_fields.items():
        default = getattr(info, "default", None)
        if isinstance(default, (bool, int, float, str)) and not callable(default):
            chosen[name] = default
    return chosen


def sampling_options(option_fields: Mapping[str, Any], prompt_options: Mapping[str, Any]) -> str:
    """The options that make a model sample (temperature > 0, an unset seed), as text."""
    found = []
    for name in option_fields:
        if name.lower() in ("temperature", "temp"):
            value = prompt_options.get(name, getattr(option_fields[name], "default", None))
            try:
                if value is not None and float(value) > 0:
                    found.append(f"{name}={value}")
            except (TypeError, ValueError):
                continue
        elif name.lower() == "seed" and prompt_options.get(name) is None:
            found.append(f"{name} unset")
    return ", ".join(found)
