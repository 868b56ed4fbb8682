"""llm-all-models-async: every sync-only llm model gets an async twin (threads or processes).

Public API: :func:`cancelled` for plugins' long blocking loops, the timeout and setting errors,
and :func:`is_twin`.  The llm entry point is :mod:`llm_all_models_async.plugin`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .cancellation import cancelled
from .errors import (
    AdapterTimeoutError,
    FirstChunkTimeoutError,
    IdleTimeoutError,
    QueueTimeoutError,
    ResponseTimeoutError,
    SettingError,
    StallTimeoutError,
    WorkerCrashedError,
    WorkerError,
    WorkerStartError,
)
from .plugin import ACTIVE, INACTIVE_REASON
from .twins import is_twin

try:
    __version__ = version("llm-all-models-async")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "ACTIVE",
    "INACTIVE_REASON",
    "AdapterTimeoutError",
    "FirstChunkTimeoutError",
    "IdleTimeoutError",
    "QueueTimeoutError",
    "ResponseTimeoutError",
    "SettingError",
    "StallTimeoutError",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerStartError",
    "__version__",
    "cancelled",
    "is_twin",
]
