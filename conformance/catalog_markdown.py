"""The clause table of conformance/README.md, rendered from the catalog.

    python -m conformance.catalog_markdown          rewrite the table in README.md
    python -m conformance.catalog_markdown --check  exit 1 if README.md differs from the catalog

The catalog is the one place a clause is described; the README shows it between the two
marker comments, and a test keeps them equal. The "how to fix" column appears once catalog
entries carry a ``fix`` line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .catalog import CLAUSES

README = Path(__file__).with_name("README.md")
START = "<!-- clause table: generated from conformance/catalog.py -->"
END = "<!-- end of clause table -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    """The Markdown table: one row per clause, in catalog order."""
    fixes = {cid: str(getattr(info, "fix", "") or "") for cid, info in CLAUSES.items()}
    with_fix = any(fixes.values())
    header = ["clause", "what it checks", *(["how to fix a failure"] if with_fix else [])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for clause_id, info in CLAUSES.items():
        row = [
            f"`{clause_id}`",
            _cell(info.summary),
            *([_cell(fixes[clause_id])] if with_fix else []),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def with_table(readme: str) -> str:
    """``readme`` with the text between the markers replaced by the rendered table."""
    head, start, rest = readme.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"README.md lacks the markers {START!r} ... {END!r}")
    return f"{head}{START}\n{render()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.catalog_markdown")
    parser.add_argument("--check", action="store_true", help="only report whether it is current")
    args = parser.parse_args(argv)
    current = README.read_text(encoding="utf-8")
    wanted = with_table(current)
    if args.check:
        if current != wanted:
            print(f"{README} is out of date: run python -m conformance.catalog_markdown")
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
