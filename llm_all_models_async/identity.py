"""What "one model" is for limits, dedicated threads and worker processes: class and model id.

llm builds a new model instance on every lookup, while the resources that make concurrency
unsafe (loaded weights, redirected fds) are shared between those instances, so shared state is
keyed by what the model *is*, never by the instance.
"""

from __future__ import annotations

from typing import Any

ModelKey = tuple[str, str, str]


def model_key(sync_model: Any) -> ModelKey:
    """Plugin module, class name and model id of ``sync_model``."""
    cls = type(sync_model)
    return (cls.__module__, cls.__qualname__, str(sync_model.model_id))
