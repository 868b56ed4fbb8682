"""Fixtures for testing the conformance suite with pytester: a subprocess run and its JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
REPO = HERE.parents[1]
RUN_BOUND = 600

# The repository's matrix plugin (--llm-cell, --llm-fixture) for runs that need it: `matrix` is
# appended to sys.path so the installed suite still wins over the checkout's copy.
MATRIX_PLUGIN = f"""
sys.path.append({str(REPO)!r})
pytest_plugins = ["matrix.pytest_cells"]
"""

REGISTER_SAMPLES = f"""
import sys
sys.path.insert(0, {str(HERE)!r})
import llm
import sample_models
if not llm.plugins.pm.is_registered(sample_models):
    llm.plugins.pm.register(sample_models, name="conformance-sample-models")
"""


@dataclass
class SuiteRun:
    """One pytester run of the suite: pytest's result and the JSON report(s) by model id."""

    result: pytest.RunResult
    reports: dict[str, dict[str, Any]]

    def clauses(self, model_id: str) -> dict[str, dict[str, Any]]:
        return {c["id"]: c for c in self.reports[model_id]["clauses"]}

    def with_outcome(self, model_id: str, *outcomes: str) -> set[str]:
        return {cid for cid, c in self.clauses(model_id).items() if c["outcome"] in outcomes}

    def reason(self, model_id: str, clause_id: str) -> str:
        return str(self.clauses(model_id)[clause_id]["reason"])

    def explain(self, model_id: str) -> str:
        """Every clause that did not pass, for assertion messages."""
        return (
            "\n".join(
                f"{cid}: {c['outcome']}: {c['reason']}"
                for cid, c in self.clauses(model_id).items()
                if c["outcome"] != "passed"
            )
            + "\n--- output tail ---\n"
            + "\n".join(self.result.outlines[-30:])
        )


@pytest.fixture
def run_suite(pytester: pytest.Pytester) -> Any:
    """``run_suite(test_source, *pytest_args, conftest="", matrix=False)`` -> SuiteRun.

    ``matrix=True`` loads the repository's matrix plugin (``--llm-cell``, ``--llm-fixture``).
    """

    def run(
        test_source: str,
        *args: str,
        conftest: str = "",
        pyproject: str | None = None,
        matrix: bool = False,
    ) -> SuiteRun:
        pytester.makeconftest(REGISTER_SAMPLES + (MATRIX_PLUGIN if matrix else "") + conftest)
        pytester.makepyfile(test_suite=test_source)
        if pyproject is not None:
            pytester.makefile(".toml", pyproject=pyproject)
        report = pytester.path / "report.json"
        result = pytester.runpytest_subprocess(
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",  # seconds of start-up per run, and no clause uses it
            "--llm-report-json",
            str(report),
            *args,
            timeout=RUN_BOUND,
        )
        reports = {}
        for path in sorted(pytester.path.glob("report*.json")):
            data = json.loads(path.read_text())
            reports[data["model_id"]] = data
        return SuiteRun(result, reports)

    return run
