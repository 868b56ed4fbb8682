"""How llm's objects cross the channel: prompts, conversation history and exceptions.

Contract:

* :func:`encode_prompt` / :func:`decode_prompt` keep everything a sync ``execute()`` reads:
  text, system, fragments, attachments (path, URL or bytes), options, schema, tool definitions,
  tool results and, on llm versions that have them, messages.  Tools travel as definitions only
  (``implementation=None``): their Python callables stay in the parent, where
  ``execute_tool_call`` runs them.  The model reference becomes the worker's own instance.
* :func:`encode_conversation` / :func:`decode_conversation` give the worker a sync
  ``llm.Conversation`` (same id) of finished ``llm.Response`` objects: ``prev.text()``,
  ``str(prev)``, ``prev.prompt``, ``prev.tool_calls()``, ``prev.response_json`` and usage work
  without running anything.
* Objects are copied attribute by attribute (version-agnostic: whatever the installed llm
  keeps on them comes along).  A private attribute that cannot be pickled (a callback, a
  generator) is dropped; a public one raises :class:`WireError` naming it.
* :func:`encode_exception` / :func:`decode_exception`: the exception keeps its type when it
  survives a pickle round trip (keys in its arguments are redacted); otherwise it becomes a
  :class:`~llm_all_models_async.errors.WorkerError` naming the original type.  Either way its
  ``__cause__`` is a :class:`RemoteTraceback` with the worker's traceback text.  Keys the
  worker was given are redacted from every text sent.
"""

from __future__ import annotations

import dataclasses
import pickle
import traceback
from collections.abc import Iterable
from typing import Any

from ..errors import WorkerError

_DROPPED_ALWAYS = frozenset({"before_call", "after_call", "done_callbacks"})


class WireError(TypeError):
    """A prompt or conversation holds a value that cannot be sent to the worker process."""


@dataclasses.dataclass(frozen=True)
class Placeholder:
    """Stands for an object the worker supplies itself (its model, the rebuilt conversation)."""

    name: str


MODEL = Placeholder("model")
CONVERSATION = Placeholder("conversation")


class RemoteTraceback(Exception):
    """The traceback text of an exception raised in a worker process (set as ``__cause__``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return False
    return True


def _portable_state(obj: Any, replace: dict[str, Any], what: str) -> dict[str, Any]:
    """``vars(obj)`` with ``replace`` applied and unpicklable private values dropped."""
    state = {name: replace.get(name, value) for name, value in vars(obj).items()}
    for name in _DROPPED_ALWAYS & state.keys():
        state[name] = [] if name == "done_callbacks" else None
    if _picklable(state):
        return state
    for name in list(state):
        if _picklable(state[name]):
            continue
        if name.startswith("_"):
            del state[name]
            continue
        raise WireError(
            f"{what}.{name} ({type(state[name]).__name__}) cannot be sent to the worker "
            "process: it cannot be pickled"
        )
    return state


def _rebuild(cls: type, state: dict[str, Any], model: Any, conversation: Any = None) -> Any:
    obj: Any = object.__new__(cls)
    for name, value in state.items():
        if value == MODEL:
            value = model
        elif value == CONVERSATION:
            value = conversation
        obj.__dict__[name] = value
    return obj


def _tool_definition(tool: Any) -> Any:
    """A tool without its Python callable (which cannot, and must not, leave the parent)."""
    if dataclasses.is_dataclass(tool) and hasattr(tool, "implementation"):
        return dataclasses.replace(tool, implementation=None)  # type: ignore[type-var]
    return tool


def _portable_tool_result(result: Any) -> Any:
    if not dataclasses.is_dataclass(result):
        return result
    changes: dict[str, Any] = {}
    if getattr(result, "instance", None) is not None:
        changes["instance"] = None  # a Toolbox instance: it lives in the parent
    exception = getattr(result, "exception", None)
    if exception is not None and not _picklable(exception):
        changes["exception"] = RuntimeError(f"{type(exception).__name__}: {exception}")
    return dataclasses.replace(result, **changes) if changes else result  # type: ignore[type-var]


def encode_prompt(prompt: Any) -> dict[str, Any]:
    """A picklable copy of ``prompt`` (see the module contract)."""
    fields = vars(prompt)
    replace: dict[str, Any] = {"model": MODEL}
    if fields.get("tools"):
        replace["tools"] = [_tool_definition(tool) for tool in fields["tools"]]
    if fields.get("tool_results"):
        replace["tool_results"] = [_portable_tool_result(r) for r in fields["tool_results"]]
    options = fields.get("options")
    options_dict = None
    if options is not None and not isinstance(options, dict) and not _picklable(options):
        # An Options class built at run time: send its values, rebuild from the worker's class.
        options_dict = options.model_dump()
        replace["options"] = None
    return {
        "class": type(prompt),
        "state": _portable_state(prompt, replace, "prompt"),
        "options_dict": options_dict,
    }


def decode_prompt(encoded: dict[str, Any], model: Any) -> Any:
    prompt = _rebuild(encoded["class"], encoded["state"], model)
    if encoded["options_dict"] is not None:
        prompt.options = model.Options(**encoded["options_dict"])
    return prompt


def _encode_response(response: Any) -> dict[str, Any]:
    replace = {
        "model": MODEL,
        "conversation": CONVERSATION,
        "prompt": encode_prompt(response.prompt),
        "_done": True,
    }
    return {"class": type(response), "state": _portable_state(response, replace, "response")}


def encode_conversation(conversation: Any) -> dict[str, Any] | None:
    """A picklable copy of the sync conversation the twin built (None stays None)."""
    if conversation is None:
        return None
    replace: dict[str, Any] = {
        "model": MODEL,
        "responses": [_encode_response(r) for r in conversation.responses],
    }
    tools = getattr(conversation, "tools", None)
    if tools:
        replace["tools"] = [_tool_definition(t) for t in tools if dataclasses.is_dataclass(t)]
    return {
        "class": type(conversation),
        "state": _portable_state(conversation, replace, "conversation"),
    }


def decode_conversation(encoded: dict[str, Any] | None, model: Any) -> Any:
    if encoded is None:
        return None
    state = dict(encoded["state"])
    responses = state.pop("responses")
    conversation = _rebuild(encoded["class"], state, model)
    conversation.responses = []
    for item in responses:
        response_state = dict(item["state"])
        response_state["prompt"] = decode_prompt(response_state["prompt"], model)
        conversation.responses.append(_rebuild(item["class"], response_state, model, conversation))
    return conversation


def encode_exception(error: BaseException, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """What the parent needs to raise ``error`` again (see the module contract)."""
    secrets = [s for s in secrets if s]
    text = redact(
        "".join(traceback.format_exception(type(error), error, error.__traceback__)), secrets
    )
    message = str(error)
    pickled: bytes | None = None
    try:
        pickled = pickle.dumps(error, protocol=pickle.HIGHEST_PROTOCOL)
        clone = pickle.loads(pickled)  # types whose __init__ cannot rebuild them fail here
        if redact(message, secrets) != message:
            # Keep the type, not the key: rebuild from redacted arguments and attributes.
            clone.args = tuple(redact(a, secrets) if isinstance(a, str) else a for a in clone.args)
            for name, value in list(vars(clone).items()):
                if isinstance(value, str):
                    setattr(clone, name, redact(value, secrets))
            if redact(str(clone), secrets) != str(clone):
                raise ValueError("a key survives in the exception")
            pickled = pickle.dumps(clone, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        pickled = None
    cls = type(error)
    return {
        "pickled": pickled,
        "type": f"{cls.__module__}.{cls.__qualname__}",
        "message": redact(message, secrets),
        "traceback": text,
    }


def decode_exception(encoded: dict[str, Any], model_id: str) -> BaseException:
    """The exception to raise in the parent, carrying the worker's traceback as its cause."""
    error: BaseException | None = None
    if encoded["pickled"] is not None:
        try:
            error = pickle.loads(encoded["pickled"])
        except Exception:
            error = None
    if not isinstance(error, BaseException):
        error = WorkerError(model_id, encoded["type"], encoded["message"])
    error.__cause__ = RemoteTraceback(encoded["traceback"])
    return error
