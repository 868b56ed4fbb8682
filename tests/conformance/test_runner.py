"""The ways to run the suite without writing a test: --pyargs, the runner, `llm async check`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.catalog import CLAUSES

# each test runs the suite in a subprocess: seconds alone, minutes on a loaded machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

BOUND = 300
REPORT_KEYS = {
    "schema",
    "suite_version",
    "adapter_version",
    "adapter_active",
    "llm_version",
    "python_version",
    "platform",
    "plugin",
    "model_id",
    "cell",
    "isolation",
    "started",
    "duration_s",
    "clauses",
    "summary",
}


REPO = Path(__file__).resolve().parents[2]


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=BOUND, check=False, env=env
    )


def check_report(path: Path, model_id: str) -> dict:
    report = json.loads(path.read_text())
    assert set(report) == REPORT_KEYS
    assert report["schema"] == "llm-conformance-report/1"
    assert report["model_id"] == model_id
    assert report["isolation"] == "thread"
    for clause in report["clauses"]:
        assert clause["id"] in CLAUSES
        assert clause["group"] == clause["id"].split(".")[0]
        assert clause["outcome"] in {"passed", "failed", "skipped", "xfailed", "xpassed", "error"}
        assert isinstance(clause["duration_s"], float)
    assert sum(report["summary"].values()) == len(report["clauses"])
    return report


@pytest.fixture
def hostile_dir(tmp_path: Path) -> Path:
    """A working directory whose pytest configuration would break a naive run."""
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option\n")
    (tmp_path / "conftest.py").write_text("raise RuntimeError('user conftest loaded')\n")
    return tmp_path


def test_runner_main_prints_table_and_writes_json(hostile_dir: Path) -> None:
    report = hostile_dir / "out" / "echo.json"
    done = run(
        [
            sys.executable,
            "-m",
            "conformance.runner",
            "echo",
            "--json",
            str(report),
            "-k",
            "hook or streaming",
        ],
        hostile_dir,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Checking 'echo'" in done.stdout
    assert "llm conformance: echo (llm " in done.stdout
    assert "streaming.incremental" in done.stdout
    data = check_report(report, "echo")
    assert data["plugin"]["name"] == "llm-echo"
    assert {c["id"] for c in data["clauses"]} == {
        cid for cid in CLAUSES if cid.startswith(("hook.", "streaming."))
    }
    assert not (hostile_dir / ".pytest_cache").exists()


def test_llm_async_check_command(hostile_dir: Path) -> None:
    report = hostile_dir / "markov.json"
    done = run(
        [
            sys.executable,
            "-m",
            "llm",
            "async",
            "check",
            "markov",
            "--json",
            str(report),
            "-k",
            "hook or options",
        ],
        hostile_dir,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = check_report(report, "markov")
    assert data["summary"].get("failed", 0) == 0


def test_pyargs_with_a_cell(tmp_path: Path) -> None:
    report, junit = tmp_path / "cell.json", tmp_path / "junit.xml"
    done = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--pyargs",
            "conformance",
            "-p",
            "matrix.pytest_cells",
            "--llm-cell",
            "markov",
            "-p",
            "no:cacheprovider",
            "--llm-report-json",
            str(report),
            f"--junitxml={junit}",
            "-k",
            "options or differential",
        ],
        tmp_path,
        # the matrix is repo tooling: the checkout on the path makes `matrix` importable
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert junit.read_text().count("<testcase ") == 5
    data = check_report(report, "markov")
    assert data["cell"] == "markov"
    outcomes = {c["id"]: c["outcome"] for c in data["clauses"]}
    assert outcomes["options.valid"] == "passed"  # the cell's options sample was used


def test_unknown_model_stops_the_run_with_exit_code_2(tmp_path: Path) -> None:
    report = tmp_path / "nope.json"
    done = run(
        [
            sys.executable,
            "-m",
            "conformance.runner",
            "no-such-model",
            "--json",
            str(report),
            "-k",
            "hook_twin or streaming_order",
        ],
        tmp_path,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "cannot set up 'no-such-model'" in output
    assert "Unknown model: no-such-model" in output
