"""The conformance suite: checks any installed sync-only llm model through the adapter.

Three ways to run it (see conformance/README.md): ``pytest --pyargs conformance --llm-model
ID``, ``llm async check ID`` (:func:`conformance.runner.main`), or a test class in the
plugin's own suite that subclasses :class:`SyncModelConformance`.  Importing this package is
cheap: the standard class is loaded on first access.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:  # the suite ships with, and is versioned as, llm-all-models-async
    __version__ = version("llm-all-models-async")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
__all__ = ["DERIVE", "SyncModelConformance", "__version__", "overridden"]


def __getattr__(name: str) -> Any:
    if name in ("SyncModelConformance", "DERIVE"):
        from . import standard

        return getattr(standard, name)
    if name == "overridden":
        from .marks import overridden

        return overridden
    raise AttributeError(f"module 'conformance' has no attribute {name!r}")
