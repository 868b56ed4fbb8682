"""The settings table of README.md, rendered from :data:`.settings.SPECS`, its one source.

``python -m llm_all_models_async.settings_table --markdown`` prints it; ``--write README.md``
rewrites the block between the markers.  ``tests/test_settings_table.py`` fails when the
README's table and the specification differ, so a setting added to ``SPECS`` reaches the
README by running the command.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .settings import ENV_PREFIX, EXCLUDE_HELP, SPECS

TABLE_START = (
    "<!-- settings table: python -m llm_all_models_async.settings_table --write README.md -->"
)
TABLE_END = "<!-- end of settings table -->"


def _default_text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def markdown_table() -> str:
    """The settings table: one row per setting, then ``LLM_ASYNC_EXCLUDE``."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for spec in SPECS.values():
        meaning = spec.help if spec.per_model else f"{spec.help} (process-wide only)"
        lines.append(f"| `{spec.env_var}` | {_default_text(spec.default)} | {meaning} |")
    lines.append(f"| `{ENV_PREFIX}EXCLUDE` | unset | {EXCLUDE_HELP} |")
    return "\n".join(lines) + "\n"


def table_in(text: str) -> str:
    """The table between the markers of ``text`` (a README)."""
    try:
        _head, rest = text.split(TABLE_START + "\n", 1)
        table, _tail = rest.split(TABLE_END, 1)
    except ValueError:
        raise ValueError(f"the settings table markers were not found: {TABLE_START!r}") from None
    return table


def replace_table(text: str) -> str:
    """``text`` with the block between the table markers re-rendered."""
    old = table_in(text)
    return text.replace(
        TABLE_START + "\n" + old + TABLE_END, TABLE_START + "\n" + markdown_table() + TABLE_END
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llm_all_models_async.settings_table",
        description="Render the settings table from the settings specification.",
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument(
        "--write", metavar="FILE", type=Path, help="rewrite the table between the markers in FILE"
    )
    args = parser.parse_args(argv)
    if args.write is not None:
        path: Path = args.write
        path.write_text(replace_table(path.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    if not args.markdown:
        parser.error("nothing to do: give --markdown or --write FILE")
    print(markdown_table(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
