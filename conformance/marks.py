"""Decorators for standard tests: ``clause`` names the clause a test checks, ``overridden`` says why
a subclass replaced one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from .catalog import CLAUSES

F = TypeVar("F", bound=Callable[..., Any])
CLAUSE_ATTR = "__llm_clause__"
OVERRIDE_ATTR = "__llm_conformance_override__"
MARKER = "llm_clause"


def clause(clause_id: str) -> Callable[[F], F]:
    """Mark a standard test as the check of ``clause_id`` (must be in the catalog)."""
    if clause_id not in CLAUSES:
        raise ValueError(f"{clause_id!r} is not in conformance.catalog")

    def decorate(function: F) -> F:
        setattr(function, CLAUSE_ATTR, clause_id)
        return pytest.mark.llm_clause(clause_id)(function)

    return decorate


def overridden(reason: str) -> Callable[[F], F]:
    """Declare why a subclass replaces a standard test; without it ``suite.overrides`` fails.

    The replacement keeps reporting under the standard clause id::

        class TestMine(SyncModelConformance):
            @overridden("our model streams one chunk per sentence; checked below instead")
            def test_streaming_incremental(self, llm_conformance): ...
    """
    if not reason or not reason.strip():
        raise ValueError("overridden() needs a reason")

    def decorate(function: F) -> F:
        setattr(function, OVERRIDE_ATTR, reason.strip())
        return function

    return decorate


def clause_of(function: Any) -> str | None:
    return getattr(function, CLAUSE_ATTR, None)
