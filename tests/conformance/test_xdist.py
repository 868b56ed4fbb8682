"""The suite under pytest-xdist: the verdicts and reports of a serial run, alone-clauses alone."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any

import pytest

from conformance import parallel

pytest.importorskip("xdist", reason="pytest-xdist is in the test extra: pip install pytest-xdist")

TWO_CLASSES = """
from conformance import SyncModelConformance


class TestGood(SyncModelConformance):
    model_id = "conformance-good"
    env = {"CONFORMANCE_GOOD_KEY": "sk-good"}


class TestIgnoreClose(SyncModelConformance):
    model_id = "torture-ignore-close"
"""

NO_MODEL = """
from conformance import SyncModelConformance


class TestEach(SyncModelConformance):
    env = {"CONFORMANCE_GOOD_KEY": "sk-good"}
"""

# Each probe opens its own descriptor: flock conflicts with the clause's own hold on the file.
PROBES = """
import fcntl
import os

from conformance import SyncModelConformance, overridden, parallel


def probe(config, mode):
    fd = os.open(parallel.lock_path(config), os.O_RDWR)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return "blocked"
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    return "free"


class TestProbes(SyncModelConformance):
    model_id = "conformance-good"
    env = {"CONFORMANCE_GOOD_KEY": "sk-good"}

    @overridden("checks the lock it runs under")
    def test_loop_responsive(self, llm_conformance, request):
        shared = probe(request.config, fcntl.LOCK_SH)
        assert shared == "blocked", "an alone-clause must hold the run's lock exclusively"
        llm_conformance.note("alone")

    @overridden("checks the lock it runs under")
    def test_hook_twin(self, llm_conformance, request):
        assert probe(request.config, fcntl.LOCK_EX) == "blocked", "no shared hold"
        assert probe(request.config, fcntl.LOCK_SH) == "free", "others may run beside it"
        llm_conformance.note("shared")
"""


# Clauses of both kinds (run beside others, run alone) and of both verdicts, in a fraction of
# the time of every clause.
SOME = ("-k", "hook_twin or streaming or differential or cancellation_task or loop or hygiene")


def outcomes(run: Any) -> dict[str, dict[str, str]]:
    return {
        model: {c["id"]: c["outcome"] for c in report["clauses"]}
        for model, report in run.reports.items()
    }


def junit_cases(path: Path) -> list[str]:
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    return sorted(f"{case.get('classname')}::{case.get('name')}" for case in root.iter("testcase"))


@pytest.mark.slow
@pytest.mark.timeout(600)  # several suite runs in subprocesses
def test_two_workers_give_the_serial_verdicts_and_one_report_each(
    run_suite: Any, pytester: pytest.Pytester
) -> None:
    serial = run_suite(TWO_CLASSES, *SOME, "--junitxml=serial.xml")
    parallel_run = run_suite(TWO_CLASSES, *SOME, "-n", "2", "--junitxml=parallel.xml")
    assert set(serial.reports) == {"conformance-good", "torture-ignore-close"}
    assert outcomes(parallel_run) == outcomes(serial)
    assert outcomes(serial)["torture-ignore-close"]["cancellation.task_cancel"] == "failed"
    assert "failed" not in outcomes(serial)["conformance-good"].values()
    cases = junit_cases(pytester.path / "parallel.xml")
    assert cases == junit_cases(pytester.path / "serial.xml")
    assert len(cases) == sum(len(v) for v in outcomes(serial).values())
    report_files = sorted(p.name for p in pytester.path.glob("report*.json"))
    assert report_files == ["report-conformance-good.json", "report-torture-ignore-close.json"]
    assert "llm conformance: torture-ignore-close" in parallel_run.result.stdout.str()


@pytest.mark.slow
@pytest.mark.timeout(600)  # several suite runs in subprocesses
def test_repeated_llm_model_checks_each_model(run_suite: Any) -> None:
    models = ("--llm-model", "conformance-good", "--llm-model", "torture-ignore-close")
    both = run_suite(NO_MODEL, *models, *SOME, "-n", "2")
    assert set(both.reports) == {"conformance-good", "torture-ignore-close"}
    assert both.result.ret == 1  # torture-ignore-close fails the cancellation clauses
    verdicts = outcomes(both)
    assert "failed" not in verdicts["conformance-good"].values()
    assert verdicts["torture-ignore-close"]["cancellation.task_cancel"] == "failed"
    # one class per model, named after it ([[] and []] are a literal [ and ] for fnmatch)
    both.result.stdout.fnmatch_lines(["*TestEach[[]torture-ignore-close[]]*test_cancellation_*"])


@pytest.mark.slow
@pytest.mark.timeout(600)  # several suite runs in subprocesses
def test_alone_clauses_hold_the_lock_exclusively(run_suite: Any) -> None:
    run = run_suite(PROBES, "-n", "2", "-k", "loop_responsive or hook_twin")
    assert run.with_outcome("conformance-good", "passed") == {"loop.responsive", "hook.twin"}, (
        run.explain("conformance-good")
    )
    assert run.reason("conformance-good", "loop.responsive") == "alone"


def test_the_turnstile_holds_back_new_clauses(tmp_path: Path) -> None:
    """While an alone-clause runs, no other clause can start: shared entry needs the gate."""
    lock = tmp_path / "run.lock"
    with parallel.turn(lock, alone=True):
        gate = open(f"{lock}.turnstile", "rb")  # noqa: SIM115 - held across the probe
        with gate, pytest.raises(BlockingIOError):
            fcntl.flock(gate.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    with parallel.turn(lock, alone=False), open(f"{lock}.turnstile", "rb") as gate:
        fcntl.flock(gate.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # a shared clause frees it


def test_serial_runs_take_no_lock() -> None:
    class Serial:
        pass

    assert parallel.lock_path(Serial()) is None


@pytest.mark.parametrize(
    ("clause_id", "alone"),
    [
        ("loop.responsive", True),
        ("concurrency.stdio", True),
        ("hygiene.fds", True),
        ("timeouts.stall", True),
        ("cancellation.task_cancel", True),
        ("streaming.order", False),
        ("differential.output", False),
        ("hook.twin", False),
    ],
)
def test_which_clauses_run_alone(clause_id: str, alone: bool) -> None:
    assert parallel.runs_alone(clause_id) is alone


def test_other_projects_test_classes_do_not_load_the_suite(pytester: pytest.Pytester) -> None:
    """The plugin is installed everywhere pytest is: a plain test class loads no clause."""
    pytester.makepyfile(
        test_plain="""
        import sys


        class TestPlain:
            def test_suite_not_loaded(self):
                assert "conformance.standard" not in sys.modules
                assert "llm" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--llm-model", "a")
    result.assert_outcomes(passed=1)
