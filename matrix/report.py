"""Aggregate conformance JSON reports into COMPATIBILITY.md and a PNG of the plugin x llm grid.

    python -m matrix.report reports/ --out COMPATIBILITY.md --png docs/compatibility.png

Each report is one cell on one llm version (schema ``llm-conformance-report/1``, written by the
suite's ``--llm-report-json``). The grid has a row per cell and isolation mode and a column per
llm version; each cell's notes from matrix.toml say what it exercises, and every cell that is
not green gets a table of the clauses that were not plain passes (one table for the llm
versions that share the same outcomes).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA = "llm-conformance-report/1"
OUTCOMES = ("passed", "failed", "skipped", "xfailed", "xpassed", "error")
# status -> (markdown mark, PNG colour, meaning)
STATUSES: dict[str, tuple[str, str, str]] = {
    "pass": (
        "✅",
        "#8fd18f",
        "every clause passed or was skipped for a capability the model lacks",
    ),
    "xfail": ("⚠️", "#f3d46b", "passed apart from expected failures listed in matrix.toml"),
    "fail": ("❌", "#ef8a8a", "a clause failed or errored, or an expected failure passed"),
    "inactive": ("💤", "#c9c9c9", "llm too old: the adapter stayed inactive"),
    "empty": ("❔", "#d8d8f0", "no clause passed"),
}
NOT_RUN = "·"


class ReportError(ValueError):
    """A report file is not a conformance report this module can read."""


@dataclass(frozen=True)
class Report:
    """One conformance report, with where it belongs in the grid."""

    path: Path
    cell: str
    column: str
    data: dict[str, Any]

    @property
    def mode(self) -> str:
        """The adapter's isolation mode of the run (reports before it was recorded: thread)."""
        return str(self.data.get("isolation") or "thread")

    @property
    def row(self) -> str:
        """The grid row: one per cell and isolation mode (``markov``, ``markov [process]``)."""
        return row_name(self.cell, self.mode)

    @property
    def summary(self) -> dict[str, int]:
        counts = {outcome: 0 for outcome in OUTCOMES}
        for clause in self.data.get("clauses", []):
            counts[clause["outcome"]] = counts.get(clause["outcome"], 0) + 1
        return counts

    @property
    def status(self) -> str:
        counts = self.summary
        if not self.data.get("adapter_active", True):
            return "inactive"
        if counts["failed"] or counts["error"] or counts["xpassed"]:
            return "fail"
        if counts["xfailed"]:
            return "xfail"
        if not counts["passed"]:
            return "empty"
        return "pass"

    @property
    def label(self) -> str:
        """Short text for a grid square, e.g. ``2 failed``."""
        counts = self.summary
        status = self.status
        if status == "fail":
            bad = counts["failed"] + counts["error"] + counts["xpassed"]
            return f"{bad} failed"
        if status == "xfail":
            return f"{counts['xfailed']} xfail"
        return {"pass": "pass", "inactive": "inactive", "empty": "no pass"}[status]

    def notable_clauses(self) -> list[dict[str, Any]]:
        """Clauses worth showing for a non-green cell: everything but plain passes."""
        return [c for c in self.data.get("clauses", []) if c["outcome"] != "passed"]


def row_name(cell: str, mode: str) -> str:
    return cell if mode == "thread" else f"{cell} [{mode}]"


def _column_from(data: dict[str, Any], stem: str) -> str:
    """The grid column: the llm version factor of the env name, else the report's llm version."""
    from matrix.cells import parse_env_name

    parsed = parse_env_name(stem)
    if parsed is not None:
        return parsed[0]
    version = str(data.get("llm_version") or "?")
    return ".".join(version.split(".")[:2])


def _row_from(data: dict[str, Any], stem: str) -> str:
    from matrix.cells import parse_env_name

    if data.get("cell"):
        return str(data["cell"])
    parsed = parse_env_name(stem)
    if parsed is not None:
        return parsed[1]
    plugin = data.get("plugin") or {}
    return str(plugin.get("name") or data.get("model_id") or stem)


def read_report(path: Path) -> Report:
    """Read and check one report file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: cannot read JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        schema = data.get("schema") if isinstance(data, dict) else None
        raise ReportError(f"{path}: schema is {schema!r}, expected {SCHEMA!r}")
    clauses = data.get("clauses")
    if not isinstance(clauses, list):
        raise ReportError(f"{path}: 'clauses' must be a list")
    for index, clause in enumerate(clauses):
        if not isinstance(clause, dict) or clause.get("outcome") not in OUTCOMES:
            raise ReportError(f"{path}: clauses[{index}] has no valid outcome")
    if "isolation" not in data:
        from matrix.cells import env_isolation

        data = {**data, "isolation": env_isolation(path.stem)}
    return Report(path, _row_from(data, path.stem), _column_from(data, path.stem), data)


def load_reports(directory: Path) -> list[Report]:
    """Every ``*.json`` report in ``directory`` (files of another schema are an error)."""
    return [read_report(path) for path in sorted(directory.glob("*.json"))]


def _version_key(version: str) -> tuple[int, ...]:
    from matrix.cells import version_key

    try:
        return version_key(version)
    except ValueError:
        return (sys.maxsize, sys.maxsize)


@dataclass(frozen=True)
class Grid:
    """Reports placed by row (cell) and column (llm version)."""

    rows: list[str]
    columns: list[str]
    squares: dict[tuple[str, str], Report]
    row_titles: dict[str, str]
    row_modes: dict[str, tuple[str, str]]  # row -> (cell, isolation mode)

    def status_counts(self) -> dict[str, int]:
        counts = {status: 0 for status in STATUSES}
        for report in self.squares.values():
            counts[report.status] += 1
        return counts


def build_grid(reports: Sequence[Report], order: Sequence[str] = ()) -> Grid:
    """Lay reports out; rows follow ``order`` (the matrix's cell order), then the rest sorted.

    Two reports for the same square (a re-run) keep the one that started last.
    """
    squares: dict[tuple[str, str], Report] = {}
    for report in reports:
        key = (report.row, report.column)
        old = squares.get(key)
        if old is None or str(report.data.get("started", "")) >= str(old.data.get("started", "")):
            squares[key] = report
    seen_rows = {row for row, _ in squares}
    modes = {report.row: (report.cell, report.mode) for report in squares.values()}
    ordered = [row_name(cell, mode) for cell in order for mode in ("thread", "process")]
    rows = [r for r in ordered if r in seen_rows] + sorted(seen_rows - set(ordered))
    columns = sorted({column for _, column in squares}, key=_version_key)
    titles = {}
    for (row, _), report in squares.items():
        plugin = report.data.get("plugin") or {}
        if plugin.get("name"):
            titles[row] = f"{plugin['name']} {plugin.get('version', '')}".strip()
        else:
            titles.setdefault(row, modes[row][0])
    return Grid(rows, columns, squares, titles, modes)


def _md_escape(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def grid_table(grid: Grid, *, marks: bool = True) -> list[str]:
    """The grid as Markdown table lines (``marks=False`` gives plain words for a terminal)."""
    header = ["cell", "isolation", *(f"llm {c}" for c in grid.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in grid.rows:
        squares = []
        for column in grid.columns:
            report = grid.squares.get((row, column))
            if report is None:
                squares.append(NOT_RUN)
            elif marks:
                squares.append(f"{STATUSES[report.status][0]} {report.label}")
            else:
                squares.append(report.label)
        cell, mode = grid.row_modes[row]
        title = f"{cell} ({grid.row_titles[row]})" if grid.row_titles[row] != cell else cell
        lines.append("| " + " | ".join([_md_escape(title), mode, *squares]) + " |")
    return lines


def render_markdown(grid: Grid, generated: datetime, notes: dict[str, str] | None = None) -> str:
    """COMPATIBILITY.md: the grid, a legend, what each cell is (``notes``, from matrix.toml),
    clause detail of every cell that is not green, and the versions used."""
    notes = notes or {}
    reports = [grid.squares[k] for k in sorted(grid.squares)]
    facts = _shared_facts(reports)
    out = [
        "# Compatibility",
        "",
        "Sync-only `llm` model plugins run through llm-all-models-async's conformance suite, "
        "one cell (plugin and model) and isolation mode (`LLM_ASYNC_ISOLATION`: thread or "
        "process) per row and one `llm` version per column. "
        "Generated by `python -m matrix.report`; do not edit by hand.",
        "",
        f"- Generated: {generated.strftime('%Y-%m-%d %H:%M UTC')} from {len(reports)} reports",
    ]
    out += [f"- {name}: {value}" for name, value in facts]
    out += [
        "",
        *grid_table(grid),
        "",
        "Legend: "
        + "; ".join(f"{mark} {meaning}" for mark, _, meaning in STATUSES.values())
        + f"; {NOT_RUN} not run.",
        "",
    ]

    if notes:
        out += ["## The cells", ""]
        cells = list(dict.fromkeys(grid.row_modes[row][0] for row in grid.rows))
        out += [f"- **{cell}**: {_md_escape(notes[cell])}" for cell in cells if notes.get(cell)]
        out.append("")

    out += ["## Cells that are not green", ""]
    groups = _flagged_groups(grid)
    if not groups:
        out += ["None: every cell that ran is green.", ""]
    for group in groups:
        first, last = group[0], group[-1]
        mark = STATUSES[last.status][0]
        versions = ", ".join(report.column for report in group)
        out += [f"### {last.row} on llm {versions}: {mark} {last.label}", ""]
        d = last.data
        if len(group) == 1:
            out.append(
                f"Model `{d.get('model_id', '?')}`, llm {d.get('llm_version', '?')}, "
                f"Python {d.get('python_version', '?')}, report `{first.path.name}`."
            )
        else:
            out.append(
                f"Model `{d.get('model_id', '?')}`, Python {d.get('python_version', '?')}; the "
                f"same clauses on every llm version listed (reasons below from llm "
                f"{d.get('llm_version', '?')}); reports "
                + ", ".join(f"`{report.path.name}`" for report in group)
                + "."
            )
        out.append("")
        notable = last.notable_clauses()
        if last.status == "inactive":
            reasons = [str(c.get("reason") or "") for c in notable if c.get("reason")]
            out.append(f"Every clause skipped: {_md_escape(reasons[0] if reasons else '')}")
        elif notable:
            out += ["| clause | outcome | reason |", "|---|---|---|"]
            out += [
                f"| `{c['id']}` | {c['outcome']} | {_md_escape(c.get('reason') or '')} |"
                for c in notable
            ]
        else:
            out.append("No clause detail in the report.")
        out.append("")

    out += [
        "## Runs",
        "",
        "| cell | isolation | llm | Python | platform | adapter | started | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for report in reports:
        d = report.data
        out.append(
            f"| {report.cell} | {report.mode} | {d.get('llm_version', '?')} | "
            f"{d.get('python_version', '?')} | "
            f"{_md_escape(d.get('platform', '?'))} | {d.get('adapter_version', '?')} | "
            f"{d.get('started', '?')} | {float(d.get('duration_s') or 0):.1f} |"
        )
    out.append("")
    return "\n".join(out)


def _flagged_groups(grid: Grid) -> list[list[Report]]:
    """The reports that are not green, one group per row and set of notable clause outcomes:
    a cell that fails the same clauses on every llm version gets one section, not nine."""
    groups: dict[tuple[Any, ...], list[Report]] = {}
    for row in grid.rows:
        for column in grid.columns:
            report = grid.squares.get((row, column))
            if report is None or report.status == "pass":
                continue
            outcomes = tuple((c["id"], c["outcome"]) for c in report.notable_clauses())
            groups.setdefault((row, report.status, outcomes), []).append(report)
    return list(groups.values())


def _shared_facts(reports: Iterable[Report]) -> list[tuple[str, str]]:
    """Versions that the reports share (or list, when they differ)."""
    facts = []
    for key, title in (
        ("adapter_version", "Adapter"),
        ("suite_version", "Suite"),
        ("python_version", "Python"),
        ("platform", "Platform"),
    ):
        values = sorted({str(r.data.get(key)) for r in reports if r.data.get(key)})
        if values:
            facts.append((title, ", ".join(values)))
    return facts


def render_png(grid: Grid, path: Path, generated: datetime) -> None:
    """Draw the grid as a coloured table (matplotlib, only needed for this)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [f"llm {c}" for c in grid.columns]
    text, colours = [], []
    for row in grid.rows:
        row_text, row_colours = [], []
        for column in grid.columns:
            report = grid.squares.get((row, column))
            row_text.append(report.label if report else "not run")
            row_colours.append(STATUSES[report.status][1] if report else "#ffffff")
        text.append(row_text)
        colours.append(row_colours)
    width = 2.2 + 1.05 * max(len(cols), 1)
    height = 1.2 + 0.38 * max(len(grid.rows), 1)
    fig, ax = plt.subplots(figsize=(width, height), dpi=120)
    ax.axis("off")
    table = ax.table(
        cellText=text or [[""]],
        cellColours=colours or [["#ffffff"]],
        rowLabels=grid.rows or [""],
        colLabels=cols or [""],
        loc="center",
        cellLoc="center",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.3)
    ax.set_title(f"llm-all-models-async conformance, {generated.strftime('%Y-%m-%d')}", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _matrix_cells() -> tuple[list[str], dict[str, str]]:
    """Cell names in matrix.toml order and each cell's notes; empty when the matrix cannot be
    read (the report must still render from reports alone)."""
    try:
        from matrix.cells import load_matrix

        cells = load_matrix().cells
    except Exception:
        return [], {}
    return list(cells), {name: cell.notes for name, cell in cells.items() if cell.notes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m matrix.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("reports", type=Path, help="directory holding the *.json reports")
    parser.add_argument("--out", type=Path, default=Path("COMPATIBILITY.md"))
    parser.add_argument("--png", type=Path, default=None, help="also draw the grid here")
    args = parser.parse_args(argv)

    if not args.reports.is_dir():
        print(f"error: {args.reports} is not a directory", file=sys.stderr)
        return 1
    try:
        reports = load_reports(args.reports)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not reports:
        print(f"error: no *.json reports in {args.reports}", file=sys.stderr)
        return 1
    generated = datetime.now(timezone.utc)
    order, notes = _matrix_cells()
    grid = build_grid(reports, order)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render_markdown(grid, generated, notes), encoding="utf-8")
    if args.png is not None:
        render_png(grid, args.png, generated)
    print("\n".join(grid_table(grid, marks=False)))
    counts = ", ".join(f"{n} {s}" for s, n in grid.status_counts().items() if n)
    print(
        f"{len(reports)} reports ({counts}) -> {args.out}" + (f", {args.png}" if args.png else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
