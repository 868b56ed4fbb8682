"""Suite clauses: overridden standard tests declare why; expected failures name real clauses."""

from __future__ import annotations

import pytest

from ..context import NOTE_KEY
from ..expectations import Expectations
from ..marks import OVERRIDE_ATTR, clause


def standard_tests() -> dict[str, str]:
    """``{test method name: clause id}`` of the standard class."""
    from ..marks import clause_of
    from ..standard import SyncModelConformance

    found = {}
    for name in dir(SyncModelConformance):
        clause_id = clause_of(getattr(SyncModelConformance, name, None))
        if name.startswith("test_") and clause_id:
            found[name] = clause_id
    return found


def undeclared_overrides(cls: type) -> list[str]:
    from ..standard import SyncModelConformance

    problems = []
    for name, clause_id in standard_tests().items():
        mine = getattr(cls, name, None)
        if mine is getattr(SyncModelConformance, name) or mine is None:
            continue
        if not getattr(mine, OVERRIDE_ATTR, None):
            problems.append(f"{name} ({clause_id})")
    return problems


class SuiteClauses:
    """suite.*: checks of the test class itself."""

    @clause("suite.overrides")
    def test_suite_overrides(self) -> None:
        problems = undeclared_overrides(type(self))
        assert not problems, (
            f"{type(self).__name__} overrides standard test(s) without saying why: "
            + ", ".join(problems)
            + "; decorate each with @conformance.overridden('reason') or declare an expected "
            "failure instead"
        )

    @clause("suite.expectations")
    def test_suite_expectations(
        self, llm_conformance_expectations: Expectations, request: pytest.FixtureRequest
    ) -> None:
        """Its fixture errors (setup error, not a failure) on unknown or malformed entries."""
        entries = llm_conformance_expectations.entries
        request.node.user_properties.append(
            (
                NOTE_KEY,
                f"{len(entries)} expected failure(s) declared"
                + (": " + ", ".join(sorted(entries)) if entries else "")
                + (
                    f" ({', '.join(sorted(others))} only in other isolation modes)"
                    if (others := llm_conformance_expectations.other_modes)
                    else ""
                ),
            )
        )
