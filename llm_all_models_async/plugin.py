"""The llm entry point: gives each sync-only model an async twin (llm 0.30+), adds ``llm async``.

llm 0.30 passes ``model_aliases`` to ``register_models``; a ``trylast`` implementation sees
every model registered before it.  On llm 0.29 and earlier, pluggy rejects a hook that asks for
that argument and every ``llm`` command would crash, so the hook is only defined when the
installed llm offers it; otherwise the adapter says once, on stderr, that it is inactive.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

import llm
from llm import hookspecs

from . import settings
from .twins import make_twin

HOOK_HAS_MODEL_ALIASES = "model_aliases" in inspect.signature(hookspecs.register_models).parameters

ACTIVE = HOOK_HAS_MODEL_ALIASES
INACTIVE_REASON: str | None = None


def _installed_llm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llm")
    except PackageNotFoundError:
        return "unknown"


if not ACTIVE:
    INACTIVE_REASON = (
        f"llm-all-models-async needs llm 0.30 or later (installed: llm "
        f"{_installed_llm_version()}); it is inactive and registers no async models"
    )
    sys.stderr.write(f"Warning: {INACTIVE_REASON}\n")


def add_twins(model_aliases: list[Any]) -> None:
    """Give every sync-only, non-excluded entry an async twin; leave native async ones alone."""
    patterns = settings.excluded_patterns()
    for entry in model_aliases:
        sync_model = entry.model
        if sync_model is None or entry.async_model is not None:
            continue
        if not isinstance(sync_model, (llm.Model, llm.KeyModel)):
            continue
        if patterns and settings.is_excluded([str(sync_model.model_id), *entry.aliases], patterns):
            continue
        entry.async_model = make_twin(sync_model)


if ACTIVE:

    @llm.hookimpl(trylast=True)
    def register_models(register: Any, model_aliases: list[Any]) -> None:
        add_twins(model_aliases)


@llm.hookimpl
def register_commands(cli: Any) -> None:
    from .cli import async_group

    cli.add_command(async_group, name="async")
