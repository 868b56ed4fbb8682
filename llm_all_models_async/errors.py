"""Exceptions the adapter raises itself; a model's own exceptions pass through unchanged."""

from __future__ import annotations


class SettingError(ValueError):
    """A setting has a value the adapter cannot use.

    Raised instead of falling back to a default, so a typo in an environment variable or in
    the settings file is seen at once rather than silently running with other limits.
    """


class AdapterTimeoutError(TimeoutError):
    """Base class of the adapter's timeouts; a subclass of the builtin ``TimeoutError``.

    ``model_id``, ``setting`` (the environment variable's name) and ``limit`` (seconds) say
    which limit fired, so callers can tell a queue wait from a slow model.
    """

    setting: str = ""
    what: str = ""

    def __init__(self, model_id: str, limit: float) -> None:
        self.model_id = model_id
        self.limit = limit
        super().__init__(f"{self.what} of model {model_id!r} exceeded {self.setting}={limit:g}s")


class ResponseTimeoutError(AdapterTimeoutError):
    """The whole response took longer than ``LLM_ASYNC_TIMEOUT``."""

    setting = "LLM_ASYNC_TIMEOUT"
    what = "Response"


class FirstChunkTimeoutError(AdapterTimeoutError):
    """The model started but produced no chunk within ``LLM_ASYNC_FIRST_CHUNK_TIMEOUT``."""

    setting = "LLM_ASYNC_FIRST_CHUNK_TIMEOUT"
    what = "First chunk"


class IdleTimeoutError(AdapterTimeoutError):
    """Two chunks were further apart than ``LLM_ASYNC_IDLE_TIMEOUT``."""

    setting = "LLM_ASYNC_IDLE_TIMEOUT"
    what = "Wait between chunks"


class QueueTimeoutError(AdapterTimeoutError):
    """No free slot (per-model or global) within ``LLM_ASYNC_QUEUE_TIMEOUT``."""

    setting = "LLM_ASYNC_QUEUE_TIMEOUT"
    what = "Wait for a free slot"


class StallTimeoutError(AdapterTimeoutError):
    """The consumer stopped reading for longer than ``LLM_ASYNC_STALL_TIMEOUT``.

    The stream was closed on the worker thread; a consumer that comes back sees this error.
    """

    setting = "LLM_ASYNC_STALL_TIMEOUT"
    what = "Consumer stall"
