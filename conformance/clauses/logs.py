"""Logs clause: `llm logs` shows the twin's response with the sync response's model fields."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from .. import features
from ..context import Context
from ..instrument import Plan
from ..marks import clause

COLUMNS = ("model", "resolved_model")


def _logged(path: Path) -> dict[str, dict[str, Any]]:
    """``{response id: {column: value}}`` as `llm logs list --json` shows them."""
    from click.testing import CliRunner
    from llm.cli import cli

    shown = CliRunner().invoke(cli, ["logs", "list", "--json", "-d", str(path), "-n", "0"])
    if shown.exit_code != 0:
        raise AssertionError(f"`llm logs list` failed: {shown.output[-1000:]}")
    return {
        str(entry["id"]): {name: entry.get(name) for name in COLUMNS}
        for entry in json.loads(shown.output)
    }


async def _log_async(response: Any, db: Any) -> str:
    """Log an awaited async response with what this llm offers for it: its own ``log_to_db``
    (0.36+), else a sync copy as `llm prompt --async` logs it."""
    await response.text()
    if features.async_response_logs_itself():
        response.log_to_db(db)
        return str(response.id)
    sync_response = await response.to_sync_response()
    sync_response.log_to_db(db)
    return str(sync_response.id)


class LogsClauses:
    """logs.record."""

    @clause("logs.record")
    def test_logs_record(self, llm_conformance: Context) -> None:
        import sqlite_utils
        from llm.migrations import migrate

        ctx = llm_conformance
        assert ctx.bench.place is not None
        path = ctx.bench.place.root / f"logs-{uuid.uuid4().hex[:8]}.db"
        db = sqlite_utils.Database(path)
        migrate(db)
        ctx.use(Plan())
        ctx.bench.reseed()
        sync_response = ctx.sync().prompt(ctx.samples.prompt, **ctx.prompt_kwargs())
        sync_response.text()
        sync_response.log_to_db(db)
        ctx.use(Plan())
        twin = ctx.twin()

        async def main() -> str:
            ctx.bench.reseed()
            return await _log_async(twin.prompt(ctx.samples.prompt, **ctx.prompt_kwargs()), db)

        twin_id = ctx.loop(main)
        logged = _logged(path)
        expected, actual = logged.get(str(sync_response.id)), logged.get(twin_id)
        assert expected is not None, "the sync response was not logged"
        assert actual is not None, "the twin's response was not logged"
        differing = [
            f"{name}: sync {expected[name]!r}, twin {actual[name]!r}"
            for name in COLUMNS
            if expected[name] != actual[name]
        ]
        assert not differing, "`llm logs` records the twin's response differently: " + "; ".join(
            differing
        )
        ctx.note(", ".join(f"{name}={actual[name]!r}" for name in COLUMNS) + " logged alike")
