"""Write a run's results: ``results.json`` (everything) and ``results.md`` (the tables)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from . import families as registry
from .runner import OPTIONS_NOTE
from .stats import DASH

JSON_NAME = "results.json"
MARKDOWN_NAME = "results.md"


def _clean(value: Any) -> Any:
    """Replace NaN and infinities (not JSON) with None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(report: dict[str, Any], out: Path) -> Path:
    path = out / JSON_NAME
    path.write_text(json.dumps(_clean(report), indent=1, sort_keys=False) + "\n")
    return path


def _loads(values: list[float] | None) -> str:
    return ", ".join(f"{x:.2f}" for x in values) if values else DASH


def _worker_line(hello: dict[str, Any] | None, label: str) -> str:
    if not hello:
        return f"| {label} | not run |"
    adapter = hello.get("adapter_version") or DASH
    if hello.get("adapter_source_sha"):
        adapter += f" (source {hello['adapter_source_sha']})"
    state = f", **unavailable: {hello['adapter_error']}**" if hello.get("adapter_error") else ""
    return (
        f"| {label} | adapter {adapter}{state}; Python {hello['python']} "
        f"({hello['python_implementation']}), llm {hello['llm_version']} |"
    )


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    workers = report.get("workers", {})
    command = report.get("command", "python -m benchmarks")
    lines = [
        "# Benchmark results",
        "",
        f"Reproduce with `{command}` from the repository root "
        f"(profile `{report['config']['profile']}`, {meta.get('duration_s', '?')} s). "
        "Contenders run in turn, one repeat each before the next repeat; figures are "
        "medians of the repeats unless a column says otherwise.",
        "",
        "| | |",
        "|---|---|",
        f"| date (UTC) | {meta['date_utc']} |",
        f"| Python | {meta['python']} ({meta['python_implementation']}) |",
        f"| llm | {meta['llm']} |",
        _worker_line(workers.get("0.2"), "this adapter (0.2)"),
        _worker_line(workers.get("0.1"), "0.1 release (own venv)"),
        f"| machine | {meta['cpu']}, {meta['cpus']} CPUs, {meta['memory_gib']} GiB, "
        f"{meta['platform']} |",
        f"| idle CPUs (cpuidle) | {meta.get('cpuidle') or 'not reported'} |",
        f"| load average (1, 5, 15 min) | at start {_loads(meta.get('load_average'))}; "
        f"at end {_loads(meta.get('load_average_end'))} |",
        f"| git | {meta['git_commit']}{' (uncommitted changes)' if meta['git_dirty'] else ''} |",
        "",
        "## Targets",
        "",
        "| target | goal | result | verdict | detail |",
        "|---|---|---|---|---|",
    ]
    for target in report.get("targets", []):
        lines.append(
            f"| {target['target']} | {target['goal']} | {target['value']} | "
            f"**{target['verdict']}** | {target['detail']} |"
        )
    patched = False
    for family in registry.ORDER:
        section = report["families"].get(family.NAME)
        if section is None:
            continue
        patched = patched or section.get("options_patched", False)
        lines += ["", f"## {section['title']}", ""]
        lines += family.markdown(section["summary"])
        if section["skipped"]:
            lines += ["", "Skipped:"]
            lines += [f"- {what}: {why}" for what, why in section["skipped"].items()]
        if section["errors"]:
            lines += ["", "Errors:"]
            lines += [f"- {what}: {'; '.join(errs)}" for what, errs in section["errors"].items()]
    notes = list(report.get("notes", []))
    if patched:
        notes.append(OPTIONS_NOTE)
    if report.get("plots"):
        lines += ["", "## Plots", ""]
        lines += [f"![{Path(p).stem}]({Path(p).name})" for p in report["plots"]]
    if report.get("plots_skipped"):
        notes.append(f"Plots not written: {report['plots_skipped']}")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_markdown(report: dict[str, Any], out: Path) -> Path:
    path = out / MARKDOWN_NAME
    path.write_text(markdown(report))
    return path
