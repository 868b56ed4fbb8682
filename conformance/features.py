"""Which features the installed llm has, so clauses can skip with the reason when one is missing."""

from __future__ import annotations

import inspect
from importlib.metadata import PackageNotFoundError, version


def llm_version() -> str:
    try:
        return version("llm")
    except PackageNotFoundError:
        return "unknown"


def hook_has_model_aliases() -> bool:
    from llm import hookspecs

    return "model_aliases" in inspect.signature(hookspecs.register_models).parameters


def has_astream_events() -> bool:
    import llm

    return hasattr(llm.AsyncResponse, "astream_events")


def async_response_logs_itself() -> bool:
    """llm 0.36 gives ``AsyncResponse`` a ``log_to_db`` of its own; 0.32-0.35 inherit the
    sync one, which writes the async response's coroutines into the database and fails."""
    import llm

    return "log_to_db" in vars(llm.AsyncResponse)


def astream_events_closes_early_exit() -> bool:
    """llm 0.36's ``astream_events()`` closes the model's generator when left early; 0.32-0.35
    leave it suspended, so there is no exit for the adapter to react to."""
    import llm

    method = getattr(llm.AsyncResponse, "astream_events", None)
    if method is None:
        return False
    try:
        return "aclose" in inspect.getsource(method)
    except (OSError, TypeError):
        return True


def has_stream_events() -> bool:
    import llm

    return hasattr(llm.Response, "stream_events")


def has_supports_conversation() -> bool:
    import llm

    return hasattr(llm.Model, "supports_conversation")


def conversation_not_supported() -> type[BaseException] | None:
    import llm

    return getattr(llm, "ConversationNotSupported", None)


def missing(feature: str, since: str) -> str:
    """The standard skip reason for a feature this llm lacks."""
    return f"llm {llm_version()} has no {feature} (added in llm {since}); upgrade llm to run it"
