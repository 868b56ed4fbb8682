"""Clause outcomes collected from pytest's reports, one run per test class (model)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .catalog import FIX_HINTS, group_of, order_key

OUTCOMES = ("passed", "failed", "skipped", "xfailed", "xpassed", "error")
NOTE_KEY = "llm-conformance-note"
# Set on a report whose failure does not match the clause's declared expected failure.
MISMATCH_ATTR = "llm_conformance_mismatch"


@dataclass
class ClauseResult:
    id: str
    outcome: str = "passed"
    reason: str = ""
    duration_s: float = 0.0

    @property
    def group(self) -> str:
        return group_of(self.id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "group": self.group,
            "outcome": self.outcome,
            "reason": self.reason,
            "duration_s": round(self.duration_s, 4),
        }


@dataclass
class ClassRun:
    """The clauses of one test class: one model, one report."""

    nodeid: str
    model_id: str | None
    cell: str | None
    isolation: str = "thread"
    started: float = field(default_factory=time.time)
    finished: float | None = None
    plugin: dict[str, str] | None = None
    clauses: dict[str, ClauseResult] = field(default_factory=dict)

    def ordered(self) -> list[ClauseResult]:
        return sorted(self.clauses.values(), key=lambda r: order_key(r.id))

    def summary(self) -> dict[str, int]:
        counts = {name: 0 for name in OUTCOMES}
        for result in self.clauses.values():
            counts[result.outcome] += 1
        return {name: count for name, count in counts.items() if count}


def _crash_message(report: Any) -> str:
    mismatch = getattr(report, MISMATCH_ATTR, None)
    if mismatch:
        return str(mismatch)
    longrepr = report.longrepr
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        message = crash.message
    elif isinstance(longrepr, tuple) and len(longrepr) == 3:
        message = str(longrepr[2])
    else:
        message = str(longrepr or "").strip().splitlines()[-1:] and str(longrepr).strip()
    for prefix in ("AssertionError: ", "Failed: ", "Skipped: "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return " ".join(str(message).split())


def _notes(report: Any) -> str:
    return "; ".join(str(v) for k, v in getattr(report, "user_properties", []) if k == NOTE_KEY)


def apply(result: ClauseResult, report: Any) -> None:
    """Fold one phase report (setup, call, teardown) into the clause's result."""
    result.duration_s += float(getattr(report, "duration", 0.0) or 0.0)
    wasxfail = getattr(report, "wasxfail", None)
    if report.when == "setup":
        if report.failed:
            result.outcome, result.reason = "error", _crash_message(report)
        elif report.skipped:
            if wasxfail is not None:
                result.outcome, result.reason = "xfailed", wasxfail or _crash_message(report)
            else:
                result.outcome, result.reason = "skipped", _crash_message(report)
        return
    if report.when == "call":
        if report.passed:
            if wasxfail is not None:
                result.outcome = "xpassed"
                result.reason = f"expected to fail but passed: {wasxfail}"
            else:
                result.outcome, result.reason = "passed", _notes(report)
        elif report.failed:
            text = str(report.longrepr or "")
            if "[XPASS(strict)]" in text:
                reason = text.split("[XPASS(strict)]", 1)[1].strip()
                result.outcome = "xpassed"
                result.reason = f"expected to fail but passed (strict): {reason}"
            else:
                result.outcome, result.reason = "failed", _crash_message(report)
                hint = FIX_HINTS.get(result.id)
                if hint:
                    result.reason += f" (fix: {hint})"
        elif report.skipped:
            if wasxfail is not None:
                result.outcome = "xfailed"
                result.reason = f"{wasxfail} -- failed with: {_crash_message(report)}"
            else:
                result.outcome, result.reason = "skipped", _crash_message(report)
        return
    if report.failed and result.outcome in ("passed", "skipped", "xfailed"):
        result.outcome = "error"
        result.reason = "teardown: " + _crash_message(report)
