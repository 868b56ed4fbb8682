"""``llm async workers``: list the live worker processes of ``isolation=process`` and stop them.

Works from any process: workers are found through their records in llm's user dir
(:mod:`.registry`), checked against the live process before they are shown or signalled.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from . import registry


def _rows() -> list[dict[str, Any]]:
    now = time.time()
    rows = []
    for record in registry.live_records():
        idle = record.idle_seconds(now)
        rows.append(
            {
                "pid": record.pid,
                "model_id": record.model_id,
                "prompts_served": record.prompts_served,
                "rss_bytes": record.rss_bytes(),
                "idle_seconds": None if idle is None else round(idle, 1),
                "busy": record.busy,
                "parent_pid": record.parent_pid,
                "started": record.started,
            }
        )
    return rows


@click.group(name="workers", invoke_without_command=True)
@click.option("json_", "--json", is_flag=True, help="Output as JSON")
@click.pass_context
def workers_command(ctx: click.Context, json_: bool) -> None:
    """List live worker processes: pid, model, prompts served, RSS, idle seconds.

    Stop them with ``llm async workers stop PID...`` (or ``--model MODEL_ID``, ``--all``).
    """
    if ctx.invoked_subcommand is not None:
        return
    rows = _rows()
    if json_:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No worker processes.")
        return
    click.echo(f"{'PID':>8}  {'PROMPTS':>7}  {'RSS MiB':>8}  {'IDLE s':>7}  MODEL")
    for row in rows:
        rss = "?" if row["rss_bytes"] is None else f"{row['rss_bytes'] / 2**20:.1f}"
        idle = "busy" if row["idle_seconds"] is None else f"{row['idle_seconds']:.1f}"
        click.echo(
            f"{row['pid']:>8}  {row['prompts_served']:>7}  {rss:>8}  {idle:>7}  {row['model_id']}"
        )


@workers_command.command(name="stop")
@click.argument("pids", nargs=-1, type=int)
@click.option("model_ids", "--model", multiple=True, help="Stop every worker of this model id")
@click.option("all_", "--all", is_flag=True, help="Stop every worker")
def stop_command(pids: tuple[int, ...], model_ids: tuple[str, ...], all_: bool) -> None:
    """Stop worker processes (SIGTERM, then SIGKILL after 5 seconds).

    A prompt running in a stopped worker fails with WorkerCrashedError; the model's next
    prompt starts a fresh worker.
    """
    if not (pids or model_ids or all_):
        raise click.UsageError("name worker PIDs, --model MODEL_ID or --all")
    records = registry.live_records()
    by_pid = {record.pid: record for record in records}
    unknown = [pid for pid in pids if pid not in by_pid]
    if unknown:
        raise click.ClickException(
            "not a live llm-async worker: "
            + ", ".join(str(pid) for pid in unknown)
            + "; see 'llm async workers'"
        )
    chosen = [
        record for record in records if all_ or record.pid in pids or record.model_id in model_ids
    ]
    if model_ids and not chosen and not pids:
        raise click.ClickException(
            "no live workers of model " + ", ".join(repr(m) for m in model_ids)
        )
    failed = []
    for record in chosen:
        if registry.stop(record):
            click.echo(f"stopped worker {record.pid} ({record.model_id})")
        else:
            failed.append(record.pid)
    if failed:
        raise click.ClickException(
            "could not stop worker(s) " + ", ".join(str(pid) for pid in failed)
        )
