"""The terminal table of clause outcomes printed at the end of a run."""

from __future__ import annotations

import textwrap

from . import adapter, features
from .outcomes import ClassRun

MARKS = {
    "passed": "PASS",
    "failed": "FAIL",
    "skipped": "skip",
    "xfailed": "xfail",
    "xpassed": "XPASS",
    "error": "ERROR",
}


def header(run: ClassRun) -> str:
    info = adapter.info()
    parts = [
        f"llm {features.llm_version()}",
        f"adapter {info.version or '?'}" + ("" if info.active else " (inactive)"),
    ]
    if run.plugin:
        parts.append(f"{run.plugin['name']} {run.plugin['version']}")
    if run.cell:
        parts.append(f"cell {run.cell}")
    if run.isolation != "thread":
        parts.append(f"isolation {run.isolation}")
    return f"llm conformance: {run.model_id} ({', '.join(parts)})"


def render(run: ClassRun, width: int = 100) -> list[str]:
    """One line per clause; the full reason of failures and errors wrapped underneath."""
    results = run.ordered()
    if not results:
        return [header(run), "  no clause ran"]
    id_width = max(len(r.id) for r in results)
    lines = [header(run), f"  {'clause':<{id_width}}  {'result':<6} {'time':>6}  reason"]
    reason_width = max(20, width - id_width - 20)
    previous = ""
    for result in results:
        reason = " ".join((result.reason or "").split())
        full = result.outcome != "passed" and len(reason) > reason_width
        shown = reason if len(reason) <= reason_width else reason[: reason_width - 3] + "..."
        lines.append(
            f"  {result.id:<{id_width}}  {MARKS.get(result.outcome, result.outcome):<6} "
            f"{result.duration_s:>5.2f}s  {'see below' if full else shown}"
        )
        if full and reason == previous:
            lines[-1] = lines[-1].replace("see below", "same reason as above")
        elif full:
            previous = reason
            lines += textwrap.wrap(
                reason,
                width=max(40, width - 6),
                initial_indent="      ",
                subsequent_indent="      ",
            )
    summary = ", ".join(f"{count} {name}" for name, count in run.summary().items())
    lines.append(f"  {summary}")
    return lines
