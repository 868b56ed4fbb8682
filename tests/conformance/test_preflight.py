"""The preflight: a sample prompt that fails on the sync model alone stops the run with exit
code 2 and one message naming the error and the fix, before any clause blames the adapter."""

from __future__ import annotations

from typing import Any

import pytest

# each test runs the suite in a subprocess: seconds alone, minutes on a loaded machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_missing_key_stops_the_run_with_one_message(run_suite: Any) -> None:
    suite = (
        "from conformance import SyncModelConformance\n\n\n"
        "class TestNoKey(SyncModelConformance):\n"
        '    model_id = "conformance-good"\n'
    )
    run = run_suite(suite)
    assert run.result.ret == 2
    output = "\n".join(run.result.outlines)
    assert output.count("llm conformance preflight:") == 1, output[-3000:]
    assert "NeedsKeyException" in output
    assert "set $CONFORMANCE_GOOD_KEY" in output
    assert "no adapter" in output
    # Only the suite's checks of the test class itself ran: no clause blamed the adapter.
    assert run.with_outcome("conformance-good", "failed", "error") == set()
    assert {c.split(".")[0] for c in run.clauses("conformance-good")} <= {"suite"}
    assert "INTERNALERROR" not in output


def test_a_crashing_sync_path_is_named_as_such(run_suite: Any) -> None:
    suite = (
        "from conformance import SyncModelConformance\n\n\n"
        "class TestSegfault(SyncModelConformance):\n"
        '    model_id = "torture-segfault"\n'
    )
    run = run_suite(suite)
    assert run.result.ret == 2
    output = " ".join(" ".join(run.result.outlines).split())
    assert "the sync path alone crashed (signal SIGSEGV)" in output, output[-3000:]
    assert "not the adapter" in output


def test_under_xdist_the_failure_is_one_message_and_exit_code_2(run_suite: Any) -> None:
    pytest.importorskip("xdist", reason="needs pytest-xdist (pip install pytest-xdist)")
    suite = (
        "from conformance import SyncModelConformance\n\n\n"
        "class TestNoKey(SyncModelConformance):\n"
        '    model_id = "conformance-good"\n'
    )
    run = run_suite(suite, "-p", "xdist", "-n", "2")
    assert run.result.ret == 2
    output = "\n".join(run.result.outlines)
    assert output.count("llm conformance preflight:") == 1, output[-3000:]
    assert "crashed" not in output
    assert "NeedsKeyException" in output
