"""matrix.report turns synthetic suite reports into the grid, the detail and the PNG."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from matrix import report as r


def clause(cid: str, outcome: str = "passed", reason: str | None = None) -> dict[str, Any]:
    return {
        "id": cid,
        "group": cid.split(".")[0],
        "outcome": outcome,
        "reason": reason,
        "duration_s": 0.01,
    }


def make_report(
    directory: Path,
    stem: str,
    clauses: list[dict[str, Any]],
    *,
    cell: str | None = None,
    llm_version: str = "0.36",
    started: str = "2026-11-20T10:00:00Z",
    adapter_active: bool = True,
    plugin: dict[str, str] | None = None,
) -> Path:
    summary: dict[str, int] = {}
    for c in clauses:
        summary[c["outcome"]] = summary.get(c["outcome"], 0) + 1
    data = {
        "schema": r.SCHEMA,
        "suite_version": "0.2.0",
        "adapter_version": "0.2.0",
        "adapter_active": adapter_active,
        "llm_version": llm_version,
        "python_version": "3.11.7",
        "platform": "Linux-x86_64",
        "plugin": plugin,
        "model_id": cell or "model",
        "cell": cell,
        "started": started,
        "duration_s": 1.5,
        "clauses": clauses,
        "summary": summary,
    }
    path = directory / f"{stem}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    d = tmp_path / "reports"
    d.mkdir()
    markov = {"name": "llm-markov", "version": "0.1"}
    make_report(
        d,
        "llm036-markov",
        [clause("streaming.incremental"), clause("options.valid")],
        cell="markov",
        plugin=markov,
    )
    make_report(
        d,
        "llm030-markov",
        [
            clause("streaming.incremental"),
            clause("options.invalid_rejected", "failed", "ValidationError was not raised"),
            clause("tools.single", "skipped", "model has no tools"),
        ],
        cell="markov",
        llm_version="0.30",
        plugin=markov,
    )
    make_report(
        d,
        "llm036-eliza",
        [clause("text.exact"), clause("streaming.incremental", "xfailed", "one chunk only")],
        cell="eliza",
    )
    make_report(
        d,
        "llmlatest-echo",
        [clause("differential.same_text"), clause("tools.single", "xpassed", "stale entry")],
        cell="echo",
    )
    return d


def test_status_of_a_report(reports: Path) -> None:
    by_stem = {rep.path.stem: rep for rep in r.load_reports(reports)}
    assert by_stem["llm036-markov"].status == "pass"
    assert by_stem["llm030-markov"].status == "fail"
    assert by_stem["llm030-markov"].label == "1 failed"
    assert by_stem["llm036-eliza"].status == "xfail"
    assert by_stem["llm036-eliza"].label == "1 xfail"
    # an expected failure that passed means matrix.toml is stale: the cell is not green
    assert by_stem["llmlatest-echo"].status == "fail"


def test_grid_places_reports_by_cell_and_llm_version(reports: Path) -> None:
    grid = r.build_grid(r.load_reports(reports), order=["markov", "eliza", "echo"])
    assert grid.rows == ["markov", "eliza", "echo"]
    assert grid.columns == ["0.30", "0.36", "latest"]
    assert grid.squares[("markov", "0.30")].status == "fail"
    assert ("eliza", "0.30") not in grid.squares
    assert grid.row_titles["markov"] == "llm-markov 0.1"
    assert grid.status_counts()["fail"] == 2


def test_markdown_has_grid_detail_and_versions(reports: Path, tmp_path: Path) -> None:
    out = tmp_path / "COMPATIBILITY.md"
    assert r.main([str(reports), "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "| cell | isolation | llm 0.30 | llm 0.36 | llm latest |" in text
    assert "| markov (llm-markov 0.1) | thread | ❌ 1 failed | ✅ pass | · |" in text
    assert "| eliza | thread | · | ⚠️ 1 xfail | · |" in text
    # clause-level detail for every non-green cell, none for the green one
    assert "### markov on llm 0.30: ❌ 1 failed" in text
    assert "| `options.invalid_rejected` | failed | ValidationError was not raised |" in text
    assert "| `tools.single` | skipped | model has no tools |" in text
    assert "### eliza on llm 0.36: ⚠️ 1 xfail" in text
    assert "### echo on llm latest: ❌ 1 failed" in text
    assert "| `tools.single` | xpassed | stale entry |" in text
    assert "markov on llm 0.36" not in text
    assert "- Adapter: 0.2.0" in text and "- Python: 3.11.7" in text
    assert "- Generated: 20" in text and "from 4 reports" in text


def test_plain_grid_is_printed(reports: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert r.main([str(reports), "--out", str(tmp_path / "c.md")]) == 0
    out = capsys.readouterr().out
    assert "| markov (llm-markov 0.1) | thread | 1 failed | pass | · |" in out
    assert "4 reports (1 pass, 1 xfail, 2 fail)" in out


def test_each_isolation_mode_gets_its_own_row(tmp_path: Path) -> None:
    make_report(tmp_path, "llm036-markov", [clause("a.b")], cell="markov")
    process = make_report(tmp_path, "llm036-markov-process", [clause("a.b", "failed")])
    data = json.loads(process.read_text())
    data["isolation"] = "process"
    process.write_text(json.dumps(data))
    # a report without the field takes the mode from its env name
    make_report(tmp_path, "llm036-echo-process", [clause("a.b")])
    grid = r.build_grid(r.load_reports(tmp_path), order=["markov", "echo"])
    assert grid.rows == ["markov", "markov [process]", "echo [process]"]
    assert grid.squares[("markov [process]", "0.36")].status == "fail"
    assert grid.squares[("markov", "0.36")].status == "pass"
    lines = r.grid_table(grid, marks=False)
    assert "| markov [process] | process | 1 failed |" not in lines
    assert "| markov | process | 1 failed |" in lines
    assert "| echo | process | pass |" in lines


def test_report_outside_tox_uses_its_own_fields(tmp_path: Path) -> None:
    make_report(
        tmp_path,
        "adhoc-run",
        [clause("streaming.incremental")],
        llm_version="0.33.1",
        plugin={"name": "llm-foo", "version": "1.0"},
    )
    (rep,) = r.load_reports(tmp_path)
    assert (rep.row, rep.column) == ("llm-foo", "0.33")


def test_inactive_adapter_and_empty_reports(tmp_path: Path) -> None:
    make_report(tmp_path, "llm029-markov", [clause("a.b", "skipped")], adapter_active=False)
    make_report(tmp_path, "llm031-markov", [clause("a.b", "skipped")])
    statuses = {rep.path.stem: rep.status for rep in r.load_reports(tmp_path)}
    assert statuses == {"llm029-markov": "inactive", "llm031-markov": "empty"}


def test_rerun_keeps_the_latest_report(tmp_path: Path) -> None:
    first = tmp_path / "a"
    second = tmp_path / "b"
    first.mkdir()
    second.mkdir()
    make_report(first, "llm036-markov", [clause("a.b", "failed")], started="2026-11-01T00:00:00Z")
    make_report(second, "llm036-markov", [clause("a.b")], started="2026-11-02T00:00:00Z")
    both = r.load_reports(first) + r.load_reports(second)
    for ordering in (both, both[::-1]):
        grid = r.build_grid(ordering)
        assert grid.squares[("markov", "0.36")].status == "pass"


def test_bad_input_fails_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert r.main([str(tmp_path / "missing")]) == 1
    assert "is not a directory" in capsys.readouterr().err
    assert r.main([str(tmp_path)]) == 1
    assert "no *.json reports" in capsys.readouterr().err
    (tmp_path / "other.json").write_text('{"schema": "something-else/1"}')
    assert r.main([str(tmp_path)]) == 1
    assert "schema is 'something-else/1'" in capsys.readouterr().err
    (tmp_path / "other.json").write_text(
        json.dumps({"schema": r.SCHEMA, "clauses": [{"id": "a.b", "outcome": "maybe"}]})
    )
    assert r.main([str(tmp_path)]) == 1
    assert "clauses[0] has no valid outcome" in capsys.readouterr().err


def test_png_is_drawn(reports: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "docs" / "compatibility.png"
    assert r.main([str(reports), "--out", str(tmp_path / "c.md"), "--png", str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 300 and height > 100


def test_same_outcomes_on_several_llm_versions_share_one_section(tmp_path: Path) -> None:
    """A cell failing the same clauses on nine llm versions gets one section naming them all;
    a version that fails differently keeps its own; inactive runs get one line, not a table."""
    xfail = [clause("a.b"), clause("errors.recovery", "xfailed", "seed chain")]
    for stem in ("llm030-smollm2", "llm031-smollm2"):
        make_report(tmp_path, stem, xfail)
    make_report(tmp_path, "llm032-smollm2", [clause("a.b", "failed", "boom")])
    make_report(
        tmp_path,
        "llm029-smollm2",
        [clause("a.b", "skipped", "adapter inactive: needs llm 0.30")] * 3,
        adapter_active=False,
    )
    grid = r.build_grid(r.load_reports(tmp_path), order=["smollm2"])
    notes = {"smollm2": "real llama.cpp | see docs/llamacpp.md", "other": "not shown"}
    text = r.render_markdown(grid, datetime.now(timezone.utc), notes)
    assert "- **smollm2**: real llama.cpp \\| see docs/llamacpp.md" in text
    assert "other" not in text
    assert text.count("### smollm2 on llm 0.30, 0.31: ⚠️ 1 xfail") == 1
    assert "`llm030-smollm2.json`, `llm031-smollm2.json`" in text
    assert "### smollm2 on llm 0.32: ❌ 1 failed" in text
    assert "### smollm2 on llm 0.29: 💤 inactive" in text
    assert "Every clause skipped: adapter inactive: needs llm 0.30" in text
