"""The suite's only door to the adapter: version, activity, twin test, cancelled() and errors."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

THREAD_PREFIX = "llm-async:"
TIMEOUT_SETTINGS = (
    "LLM_ASYNC_TIMEOUT",
    "LLM_ASYNC_FIRST_CHUNK_TIMEOUT",
    "LLM_ASYNC_IDLE_TIMEOUT",
    "LLM_ASYNC_QUEUE_TIMEOUT",
    "LLM_ASYNC_STALL_TIMEOUT",
)


@dataclass(frozen=True)
class AdapterInfo:
    """What the suite knows about the installed adapter."""

    version: str | None
    active: bool
    inactive_reason: str | None
    import_error: str | None


def _module() -> Any | None:
    try:
        return importlib.import_module("llm_all_models_async")
    except Exception:
        return None


def info() -> AdapterInfo:
    try:
        adapter_version: str | None = version("llm-all-models-async")
    except PackageNotFoundError:
        adapter_version = None
    try:
        module = importlib.import_module("llm_all_models_async")
    except Exception as error:  # a broken adapter must still produce a report
        return AdapterInfo(adapter_version, False, None, f"{type(error).__name__}: {error}")
    return AdapterInfo(
        adapter_version,
        bool(getattr(module, "ACTIVE", False)),
        getattr(module, "INACTIVE_REASON", None),
        None,
    )


def is_twin(model: Any) -> bool:
    module = _module()
    return bool(module is not None and model is not None and module.is_twin(model))


def cancelled() -> bool | None:
    """``llm_all_models_async.cancelled()`` on this thread, None when unavailable."""
    module = _module()
    if module is None:
        return None
    try:
        return bool(module.cancelled())
    except Exception:
        return None


def is_worker_thread_name(name: str) -> bool:
    return name.startswith(THREAD_PREFIX)


def settings_of(model_id: str) -> Any | None:
    """The adapter's effective settings for the model (``settings.resolve``), None if unknown."""
    try:
        settings = importlib.import_module("llm_all_models_async.settings")
        return settings.resolve(model_id)
    except Exception:
        return None


def configured_concurrency(model_id: str) -> int | None:
    """The adapter's effective ``model_concurrency`` for the model, None when unknown."""
    found = settings_of(model_id)
    return None if found is None else int(found.model_concurrency)


def kill_after(model_id: str) -> float | None:
    """The adapter's effective ``LLM_ASYNC_KILL_AFTER`` for the model: seconds a stopped
    worker process may stay inside the model before it is killed; None when it never is or
    the adapter does not say."""
    found = settings_of(model_id)
    value = None if found is None else getattr(found, "kill_after", None)
    return None if value is None else float(value)


def timeout_error_problem(error: BaseException | None, setting: str, model_id: str) -> str | None:
    """Why ``error`` is not the adapter timeout ``setting`` should raise, or None if it is."""
    if error is None:
        return f"no error was raised although {setting} was set"
    if not isinstance(error, TimeoutError):
        return f"{type(error).__name__}: {error} is not a TimeoutError subclass"
    found = getattr(error, "setting", None)
    if found != setting:
        return f"{type(error).__name__} names setting {found!r}, expected {setting!r}"
    if getattr(error, "model_id", None) != model_id:
        return f"{type(error).__name__}.model_id is {getattr(error, 'model_id', None)!r}"
    if not isinstance(getattr(error, "limit", None), (int, float)):
        return f"{type(error).__name__} has no numeric .limit"
    return None


# -- process isolation (issue 8) ------------------------------------------------------------


def worker_crashed_error() -> type[BaseException] | None:
    """``llm_all_models_async.WorkerCrashedError``, None when the adapter has none."""
    module = _module()
    return getattr(module, "WorkerCrashedError", None) if module is not None else None


def live_workers() -> list[dict[str, Any]] | None:
    """The adapter's live worker processes as ``llm async workers`` lists them (pid, model_id,
    prompts_served, ...), None when the adapter has no process isolation."""
    try:
        registry = importlib.import_module("llm_all_models_async.process.registry")
        import dataclasses

        return [dataclasses.asdict(record) for record in registry.live_records()]
    except Exception:
        return None


def prompts_served(pid: int) -> int | None:
    """How many prompts the worker ``pid`` served, by the adapter's own count; None if unknown."""
    for entry in live_workers() or []:
        if entry.get("pid") == pid:
            served = entry.get("prompts_served")
            return int(served) if served is not None else None
    return None


def stop_workers(timeout: float = 10.0) -> None:
    """Stop this process's worker processes and wait (bounded) until they exited: a test class
    must not leave warm workers of its temporary user dir behind."""
    try:
        pool = importlib.import_module("llm_all_models_async.process.pool")
    except Exception:
        return
    workers = list(pool.all_workers())
    pool.shutdown()
    for worker in workers:
        worker.exited.wait(timeout)
