"""Unit tests of the suite's parts that need no model run: catalog, expectations, outcomes..."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conformance import capabilities, expectations, jsonreport, samples
from conformance.catalog import CLAUSES, GROUPS
from conformance.clauses.suite import standard_tests, undeclared_overrides
from conformance.marks import overridden
from conformance.outcomes import ClassRun, ClauseResult, apply
from conformance.standard import SyncModelConformance

README = Path(__file__).parents[2] / "conformance" / "README.md"


def test_every_clause_has_exactly_one_standard_test() -> None:
    tests = standard_tests()
    assert sorted(tests.values()) == sorted(CLAUSES)
    for name, clause_id in tests.items():
        assert name == "test_" + clause_id.replace(".", "_")


def test_readme_documents_every_clause_and_its_fix() -> None:
    text = README.read_text()
    rows = re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \| (.+) \| (.+) \|$", text, flags=re.M)
    assert {clause_id for clause_id, _, _ in rows} == set(CLAUSES)
    for clause_id, summary, fix in rows:
        assert (summary, fix) == (CLAUSES[clause_id].summary, CLAUSES[clause_id].fix)
    assert GROUPS[0] == "suite"


def test_override_guard() -> None:
    class Sloppy(SyncModelConformance):
        def test_streaming_order(self, llm_conformance: Any) -> None:
            pass

    class Careful(SyncModelConformance):
        @overridden("streams one chunk per sentence")
        def test_streaming_order(self, llm_conformance: Any) -> None:
            pass

    assert undeclared_overrides(Sloppy) == ["test_streaming_order (streaming.order)"]
    assert undeclared_overrides(Careful) == []
    with pytest.raises(ValueError):
        overridden("  ")


def test_expectations_sources_and_validation(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        "[tool.llm-conformance.expected-failures]\n"
        '"loop.responsive" = "blocks the loop on purpose"\n'
        '"loop.responsiv" = "typo"\n'
        "[tool.llm-conformance.models.m.expected-failures]\n"
        '"hygiene.fds" = "keeps its model file open"\n'
        '"hygiene.threads" = ""\n'
    )
    found = expectations.load(
        model_id="m",
        pyproject=pyproject,
        class_entries={"loop.responsive": "class wins"},
        class_name="TestM",
    )
    assert set(found.entries) == {"loop.responsive", "hygiene.fds"}
    assert found.entries["loop.responsive"].reason == "class wins"
    assert [e.clause_id for e in found.unknown] == ["loop.responsiv"]
    assert any("non-empty reason" in p for p in found.problems)
    assert "[expected failure, pyproject.toml [tool.llm-conformance] [models.m]]" in (
        found.reason_for("hygiene.fds") or ""
    )
    other = expectations.load(model_id="other", pyproject=pyproject)
    assert "hygiene.fds" not in other.entries


def test_expected_failures_can_name_the_isolation_modes_they_hold_in() -> None:
    """A side effect process isolation contains fails in thread mode only: its entry must not
    turn the process run's pass into an XPASS, nor be dropped without a word."""
    declared = {
        "process.state": {"reason": "pointed fd 1 at", "isolation": ["thread"]},
        "hygiene.fds": {"reason": "keeps its model file open", "isolation": "process"},
        "loop.responsive": "in every mode",
        "streaming.order": {"reason": "x", "isolation": ["threads"]},
    }
    thread = expectations.load(model_id="m", cell=declared, cell_name="c", isolation="thread")
    process = expectations.load(model_id="m", cell=declared, cell_name="c", isolation="process")
    assert set(thread.entries) == {"process.state", "loop.responsive"}
    assert thread.other_modes == ["hygiene.fds"]
    assert set(process.entries) == {"hygiene.fds", "loop.responsive"}
    assert process.other_modes == ["process.state"]
    for found in (thread, process):
        assert any("'streaming.order': isolation must list modes" in p for p in found.problems)


def test_expected_failure_entries_match_their_failure() -> None:
    found = expectations.Expectations()
    found.add(
        {
            "hygiene.fds": "file descriptor(s) left open",
            "hygiene.threads": {"reason": "keeps a pool", "match": r"thread\(s\) left .* \['pool"},
            "loop.responsive": {"reason": "x", "match": "("},
            "hygiene.children": {"reason": "x", "mtach": "typo"},
            "streaming.order": {"match": "no reason"},
            "streaming.no_stream": 3,
        },
        "TestM.expected_failures",
    )
    assert set(found.entries) == {"hygiene.fds", "hygiene.threads"}
    fds, threads = found.entries["hygiene.fds"], found.entries["hygiene.threads"]
    assert fds.matches("File descriptor(s)  left OPEN: {7: 'pipe'}")
    assert not fds.matches("hygiene.fds: a normal prompt failed")
    assert threads.matches("thread(s) left behind after 10s: ['pool-1']")
    assert not threads.matches("thread(s) left behind after 10s: ['llm-async:m']")
    problems = " | ".join(found.problems)
    assert "'loop.responsive': match '(' is not a regex" in problems
    assert "'hygiene.children' has unknown key(s) ['mtach']" in problems
    assert "'streaming.order' needs a non-empty reason" in problems
    assert "'streaming.no_stream' must be a reason string or a table" in problems


def test_samples_reject_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown sample 'promt'"):
        samples.build({"promt": "typo"})
    built = samples.build({"prompt": "a"}, {"conversation_prompts": ["x"]}, {"seed": None})
    assert built.turns() == ("x", "a again", "a once more")
    assert built.seed == samples.Samples().seed  # None in a layer means "not set"
    png = built.the_attachment(frozenset({"image/png"}))
    assert png is not None and png.content_bytes() == samples.TINY_PNG
    assert built.the_attachment(frozenset({"audio/wav"})) is None


def test_capability_skip_reasons_say_how_to_enable() -> None:
    model = SimpleNamespace(
        can_stream=False, Options=None, supports_tools=False, attachment_types=set()
    )
    caps = capabilities.derive(model, {"supports_schema": (True, "TestX")})
    assert caps.supports_schema is True and caps.sources["supports_schema"] == "TestX"
    reason = capabilities.skip_reason(caps, "supports_tools")
    assert reason.startswith("the model declares supports_tools=False; set supports_tools = ")
    assert "on the test class" in reason
    assert "{'image/png'}" in capabilities.skip_reason(caps, "attachment_types")
    with pytest.raises(KeyError):
        caps.set("supports_telepathy", True, "x")


def _report(when: str, outcome: str, **extra: Any) -> Any:
    return SimpleNamespace(
        when=when,
        outcome=outcome,
        passed=outcome == "passed",
        failed=outcome == "failed",
        skipped=outcome == "skipped",
        duration=0.5,
        user_properties=[],
        **extra,
    )


@pytest.mark.parametrize(
    ("phases", "outcome", "reason"),
    [
        ([("setup", "passed", {}), ("call", "passed", {})], "passed", ""),
        ([("setup", "skipped", {"longrepr": ("f", 1, "Skipped: why")})], "skipped", "why"),
        ([("setup", "failed", {"longrepr": "boom"})], "error", "boom"),
        (
            [("setup", "passed", {}), ("call", "failed", {"longrepr": "AssertionError: bad"})],
            "failed",
            "bad",
        ),
        (
            [
                ("setup", "passed", {}),
                ("call", "skipped", {"wasxfail": "known", "longrepr": ("f", 1, "oops")}),
            ],
            "xfailed",
            "known -- failed with: oops",
        ),
        (
            [("setup", "passed", {}), ("call", "failed", {"longrepr": "[XPASS(strict)] known"})],
            "xpassed",
            "expected to fail but passed (strict): known",
        ),
        (
            [
                ("setup", "passed", {}),
                ("call", "passed", {}),
                ("teardown", "failed", {"longrepr": "leak"}),
            ],
            "error",
            "teardown: leak",
        ),
    ],
)
def test_outcomes_from_reports(phases: list[Any], outcome: str, reason: str) -> None:
    result = ClauseResult("loop.responsive")
    for when, phase_outcome, extra in phases:
        apply(result, _report(when, phase_outcome, **extra))
    assert (result.outcome, result.reason) == (outcome, reason)
    assert result.duration_s == 0.5 * len(phases)


def test_json_report_paths_and_shape(tmp_path: Path) -> None:
    one = ClassRun("a", "m/one", None)
    one.clauses["loop.responsive"] = ClauseResult("loop.responsive", "failed", "stall", 1.0)
    two = ClassRun("b", "two", "cell")
    written = jsonreport.write(tmp_path / "r.json", [one, two])
    assert [p.name for p in written] == ["r-m_one.json", "r-two.json"]
    again = ClassRun("t.py::TestOther", "m/one", None)
    names = [p.name for p, _ in jsonreport.paths_for(tmp_path / "r.json", [one, two, again])]
    assert names == ["r-m_one-a.json", "r-two.json", "r-m_one-TestOther.json"]
    data = jsonreport.build(one)
    assert data["summary"] == {"failed": 1}
    assert data["clauses"] == [
        {
            "id": "loop.responsive",
            "group": "loop",
            "outcome": "failed",
            "reason": "stall",
            "duration_s": 1.0,
        }
    ]
    assert data["started"].endswith("Z")


def test_process_state_names_each_change_and_restores_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import logging
    import os
    import warnings

    from conformance.resources import ProcessState

    logger = logging.getLogger("conformance.units.probe")
    logger.setLevel(logging.INFO)
    before = ProcessState.take()
    assert before.changes_since(before) == []
    monkeypatch.setenv("CONFORMANCE_UNITS_PROBE", "x")
    logger.setLevel(logging.ERROR)
    logging.getLogger("conformance.units.created.later").setLevel(logging.ERROR)
    warnings.simplefilter("ignore", UserWarning)
    monkeypatch.chdir(tmp_path)
    changes = ProcessState.take().changes_since(before)
    assert changes == [
        "logger conformance.units.probe: level INFO -> ERROR",
        "warning filters changed "
        f"({len(before.warning_filters)} -> {len(before.warning_filters) + 1} entries)",
        "os.environ changed: CONFORMANCE_UNITS_PROBE",
        f"the working directory changed from {before.cwd} to {tmp_path}",
    ]
    before.restore()
    assert ProcessState.take().changes_since(before) == []
    assert "CONFORMANCE_UNITS_PROBE" not in os.environ


def test_isolation_mode_and_sampling_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from conformance.clauses.process import isolation_mode

    monkeypatch.delenv("LLM_ASYNC_ISOLATION", raising=False)
    assert isolation_mode("markov") == "thread"
    monkeypatch.setenv("LLM_ASYNC_ISOLATION", "process")
    assert isolation_mode("markov") == "process"
    fields = {
        "temperature": SimpleNamespace(default=0.0),
        "seed": SimpleNamespace(default=None),
    }
    assert samples.sampling_options(fields, {"temperature": 0.8, "seed": 1}) == "temperature=0.8"
    assert samples.sampling_options(fields, {}) == "seed unset"


def test_messages_name_the_real_exception() -> None:
    from conformance.clauses.cancellation import close_problem
    from conformance.instrument import Record

    ignored = close_problem(RuntimeError("generator ignored GeneratorExit"))
    assert "catches GeneratorExit and keeps yielding" in ignored
    failed_close = close_problem(OSError(5, "Input/output error"))
    assert "OSError: [Errno 5] Input/output error" in failed_close
    assert "keeps yielding" not in failed_close
    record = Record(0, "llm-async:m", 1, {})
    record.ended_by, record.end_thread = "error", "llm-async:m"
    record.error = ConnectionResetError("peer closed")
    assert record.describe_end() == (
        "ended by error (ConnectionResetError: peer closed) on thread 'llm-async:m'"
    )


def test_preflight_falls_back_in_process_when_a_child_cannot_load_the_plugins() -> None:
    """A plugin registered by hand from a module no child can import (built at run time):
    the preflight judges the prompt in this process instead of blaming the model."""
    import types

    import llm

    from conformance import childrun, preflight

    ghost = types.ModuleType("conformance_units_ghost_plugin")

    class Ghost(llm.Model):
        model_id = "conformance-units-ghost"

        def execute(self, prompt: Any, stream: bool, response: Any, conversation: Any) -> Any:
            if prompt.prompt == "fail":
                raise ValueError("ghost failure")
            yield "boo"

    @llm.hookimpl
    def register_models(register: Any) -> None:
        register(Ghost())

    ghost.register_models = register_models  # type: ignore[attr-defined]
    llm.plugins.pm.register(ghost, name="conformance-units-ghost")
    try:
        result = childrun.run_prompt("conformance-units-ghost", "hi", mode="sync")
        assert result.setup_failed and result.outcome is not None
        assert result.outcome["type"] == "ModuleNotFoundError"
        model = llm.get_model("conformance-units-ghost")
        assert preflight.failure(model.model_id, model, "hi", None, {}) is None
        message = preflight.failure(model.model_id, model, "fail", None, {})
        assert message is not None and "ValueError: ghost failure" in message
    finally:
        llm.plugins.pm.unregister(name="conformance-units-ghost")
