"""conformance/README.md's clause table is the catalog's, row for row."""

from __future__ import annotations

import dataclasses

import pytest

from conformance import catalog, catalog_markdown


def test_readme_table_is_the_catalog() -> None:
    readme = catalog_markdown.README.read_text(encoding="utf-8")
    assert readme == catalog_markdown.with_table(readme), (
        "conformance/README.md's clause table differs from conformance/catalog.py: "
        "run python -m conformance.catalog_markdown"
    )
    for clause_id in catalog.CLAUSES:
        assert f"| `{clause_id}` |" in readme


def test_a_fix_line_gets_its_own_column(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclasses.dataclass(frozen=True)
    class WithFix:
        id: str
        summary: str
        fix: str

    clauses = {
        "hook.twin": WithFix("hook.twin", "the twin is the adapter's", "install the adapter"),
        "hygiene.fds": WithFix("hygiene.fds", "no fd left open", "close files in a | finally"),
    }
    monkeypatch.setattr(catalog_markdown, "CLAUSES", clauses)
    assert catalog_markdown.render().splitlines() == [
        "| clause | what it checks | how to fix a failure |",
        "|---|---|---|",
        "| `hook.twin` | the twin is the adapter's | install the adapter |",
        "| `hygiene.fds` | no fd left open | close files in a \\| finally |",
    ]


def test_missing_markers_are_an_error() -> None:
    with pytest.raises(ValueError, match="lacks the markers"):
        catalog_markdown.with_table("# no table here\n")
