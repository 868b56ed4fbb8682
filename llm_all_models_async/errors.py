"""Exceptions the adapter raises itself; a model's own exceptions pass through unchanged."""

from __future__ import annotations

import llm


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


class WorkerCrashedError(llm.ModelError):
    """The worker process running a model died (signal, ``os._exit``, out of memory).

    Raised after the chunks the worker produced before it died.  ``model_id``, ``pid``,
    ``returncode`` (negative: the signal number), ``signal_name`` and ``stderr_tail`` (the
    last lines the worker wrote to its fd 2) say what happened; the next prompt of the model
    starts a fresh worker.
    """

    def __init__(
        self, model_id: str, pid: int, returncode: int | None, stderr_tail: list[str]
    ) -> None:
        import signal

        self.model_id = model_id
        self.pid = pid
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.signal_name: str | None = None
        if returncode is None:
            how = "exit status unknown"
        elif returncode < 0:
            try:
                self.signal_name = signal.Signals(-returncode).name
            except ValueError:
                self.signal_name = f"signal {-returncode}"
            how = f"killed by {self.signal_name}"
        else:
            how = f"exit code {returncode}"
        self.how = how
        self.tail_text = (
            "\n".join("  " + line for line in stderr_tail) if stderr_tail else "  (nothing)"
        )
        super().__init__(
            f"worker process {pid} of model {model_id!r} died ({how}); "
            f"last lines of its stderr:\n{self.tail_text}"
        )


class WorkerStartError(llm.ModelError):
    """A worker process for a model could not start, load its plugins or find the model."""

    def __init__(self, model_id: str, python: str, reason: str) -> None:
        self.model_id = model_id
        self.python = python
        self.reason = reason
        super().__init__(
            f"could not start a worker process for model {model_id!r} with Python {python}: "
            f"{reason}"
        )


class WorkerError(llm.ModelError):
    """A model raised, in its worker, an exception that could not be rebuilt in the parent.

    ``remote_type`` names the original class; ``__cause__`` holds the worker's traceback.
    """

    def __init__(self, model_id: str, remote_type: str, message: str) -> None:
        self.model_id = model_id
        self.remote_type = remote_type
        super().__init__(f"{remote_type}: {message} (raised by model {model_id!r} in its worker)")
