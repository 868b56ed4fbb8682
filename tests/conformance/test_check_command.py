"""`llm async check`: every setting of a test class from flags or files, checked up front.

Bad values are usage errors (exit 2) before any clause runs; good ones reach the suite's own
test class, which the end-to-end runs confirm through the JSON report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conformance import runsettings
from llm_all_models_async.cli import async_group

BOUND = 300


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace pytest.main: record the arguments, the settings file and the environment."""
    seen: dict[str, Any] = {}

    def fake_main(args: list[str]) -> int:
        seen["args"] = list(args)
        if "--llm-config" in args:
            path = Path(args[args.index("--llm-config") + 1])
            seen["settings"] = json.loads(path.read_text())
        seen["isolation"] = os.environ.get(runsettings.ISOLATION_ENV_VAR)
        return seen.get("code", 0)

    monkeypatch.setattr(pytest, "main", fake_main)
    monkeypatch.delenv(runsettings.ISOLATION_ENV_VAR, raising=False)
    return seen


def llm_async_check(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`llm async check ARGS` in a child interpreter (the installed llm CLI, this Python)."""
    code = "import sys; from llm.cli import cli; cli(['async', 'check', *sys.argv[1:]])"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=False,
    )


def check(*args: str) -> Any:
    return CliRunner().invoke(async_group, ["check", "markov", *args])


def test_every_flag_reaches_the_suite(captured: dict[str, Any]) -> None:
    result = check(
        "-o",
        "length",
        "4",
        "--option",
        "delay",
        "0",
        "--prompt",
        "hello there",
        "--system",
        "be brief",
        "--failing-prompt",
        "explode",
        "--option-valid",
        "length",
        "3",
        "--option-invalid",
        "length",
        "many",
        "--expect-failure",
        "concurrency.stdio=redirects fd 1",
        "--isolation",
        "process",
        "-k",
        "streaming",
    )
    assert result.exit_code == 0, result.output
    assert captured["settings"] == {
        "prompt_options": {"length": "4", "delay": "0"},
        "prompt": "hello there",
        "system": "be brief",
        "failing_prompt": "explode",
        "options": {"length": "3"},
        "invalid_options": {"length": "many"},
        "isolation": "process",
        "expected-failures": {"concurrency.stdio": "redirects fd 1"},
    }
    assert captured["isolation"] == "process"  # set for the run...
    assert os.environ.get(runsettings.ISOLATION_ENV_VAR) is None  # ...and only for the run
    args = captured["args"]
    assert args[args.index("--llm-model") + 1] == "markov"
    assert args[args.index("-k") + 1] == "streaming"  # unknown options go to pytest


def test_config_then_samples_then_flags(captured: dict[str, Any], tmp_path: Path) -> None:
    config = tmp_path / "pyproject.toml"
    config.write_text(
        "[project]\nname = 'x'\n\n"
        "[tool.llm-conformance]\n"
        'prompt = "from config"\n'
        'system = "config system"\n'
        'isolation = "thread"\n'
        "can_stream = true\n"
        'env = {MY_KEY = "dummy"}\n'
        "prompt_options = {length = 5}\n"
        "[tool.llm-conformance.expected-failures]\n"
        '"hygiene.fds" = "leaks a log file"\n'
    )
    samples = tmp_path / "samples.toml"
    samples.write_text('prompt = "from samples"\n[options]\nlength = 2\n')
    result = check("--config", str(config), "--samples", str(samples), "-o", "delay", "0")
    assert result.exit_code == 0, result.output
    assert captured["settings"] == {
        "prompt": "from samples",
        "system": "config system",
        "isolation": "thread",
        "can_stream": True,
        "env": {"MY_KEY": "dummy"},
        "prompt_options": {"length": 5, "delay": "0"},  # tables merge, typed values stay typed
        "options": {"length": 2},
        "expected-failures": {"hygiene.fds": "leaks a log file"},
    }
    assert captured["isolation"] == "thread"


def test_a_top_level_config_file(captured: dict[str, Any], tmp_path: Path) -> None:
    config = tmp_path / "check.toml"
    config.write_text('failing-prompt = "explode"\nsamples = "samples.toml"\n')
    (tmp_path / "samples.toml").write_text('[invalid_options]\nlength = "many"\n')
    result = check("--config", str(config))
    assert result.exit_code == 0, result.output
    assert captured["settings"] == {
        "failing_prompt": "explode",
        "invalid_options": {"length": "many"},
    }


@pytest.mark.parametrize(
    ("pytest_code", "expected"),
    [(0, 0), (1, 1), (2, 2), (3, 1), (4, 2), (5, 2)],
)
def test_exit_codes(captured: dict[str, Any], pytest_code: int, expected: int) -> None:
    """0 passed, 1 a clause failed (or the suite broke), 2 usage/preflight (pytest.exit: 2)."""
    captured["code"] = pytest_code
    assert check().exit_code == expected


@pytest.mark.parametrize(
    ("args", "files", "message"),
    [
        (["--isolation", "fork"], {}, "'fork' is not one of 'thread', 'process'"),
        (["-o", "length"], {}, "Option '-o' requires 2 arguments"),
        (["--option-valid", "length"], {}, "requires 2 arguments"),
        (["--expect-failure", "hygiene.fds"], {}, "expected CLAUSE=REASON"),
        (["--expect-failure", "hygiene.fds="], {}, "expected CLAUSE=REASON"),
        (["--expect-failure", "no.such=why"], {}, "'no.such' is not a clause id"),
        (["--config", "missing.toml"], {}, "does not exist"),
        (["--samples", "missing.toml"], {}, "does not exist"),
        (["--config", "bad.toml"], {"bad.toml": "prompt = 3\n"}, "prompt must be a string"),
        (["--config", "bad.toml"], {"bad.toml": "colour = 3\n"}, "unknown setting 'colour'"),
        (["--config", "bad.toml"], {"bad.toml": "prompt = \n"}, "not valid TOML"),
        (
            ["--config", "bad.toml"],
            {"bad.toml": 'isolation = "fork"\n'},
            "isolation must be 'thread' or 'process'",
        ),
        (
            ["--config", "bad.toml"],
            {"bad.toml": "clause_timeout = -1\n"},
            "clause_timeout must be a number of seconds > 0",
        ),
        (
            ["--config", "pyproject.toml"],
            {"pyproject.toml": "[project]\nname = 'x'\n"},
            "no [tool.llm-conformance] table",
        ),
        (["--samples", "s.toml"], {"s.toml": "can_stream = true\n"}, "not a sample: 'can_stream'"),
        (["--samples", "s.toml"], {"s.toml": "options = 3\n"}, "options must be a table"),
    ],
)
def test_bad_values_are_usage_errors(
    captured: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    files: dict[str, str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = check(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "args" not in captured  # nothing ran


def test_pytest_reads_the_same_settings_file(tmp_path: Path) -> None:
    """--llm-config rejects a bad file as a usage error, as the command line does."""
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = 0\n")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "--pyargs", "conformance"),
            *("--llm-model", "markov", "-p", "no:cacheprovider", "--llm-config", str(bad)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=False,
    )
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "seed must be a whole number >= 1" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("way", ["flags", "samples", "config"])
def test_settings_change_the_verdicts(tmp_path: Path, way: str) -> None:
    """The same settings three ways: the valid options reach execute(), the declared failure
    is expected, and the check exits 0."""
    flags = {
        "flags": [
            "-o",
            "length",
            "3",
            "--option-valid",
            "length",
            "4",
            "--option-invalid",
            "length",
            "many",
        ],
        "samples": ["--samples", "samples.toml"],
        "config": ["--config", "pyproject.toml"],
    }[way]
    samples = (
        '[prompt_options]\nlength = 3\n[options]\nlength = 4\n[invalid_options]\nlength = "many"\n'
    )
    (tmp_path / "samples.toml").write_text(samples)
    (tmp_path / "pyproject.toml").write_text('[tool.llm-conformance]\nsamples = "samples.toml"\n')
    report = tmp_path / "report.json"
    done = llm_async_check(tmp_path, "markov", "--json", str(report), *flags, "-k", "options")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    clauses = {c["id"]: c for c in json.loads(report.read_text())["clauses"]}
    assert clauses["options.valid"]["outcome"] == "passed"
    assert "'length': " in clauses["options.valid"]["reason"]
    assert "4" in clauses["options.valid"]["reason"]
    assert clauses["options.invalid"]["outcome"] == "passed"
    assert clauses["options.invalid"]["reason"].startswith("2 invalid option set(s)")


@pytest.mark.slow
def test_a_failing_clause_exits_1_and_a_declared_one_0(tmp_path: Path) -> None:
    """An expected failure that does not happen fails the check (strict), else it passes."""
    report = tmp_path / "report.json"

    def run_check(*args: str) -> int:
        return llm_async_check(tmp_path, "markov", "--json", str(report), *args).returncode

    assert run_check("--expect-failure", "hook.twin=it never fails", "-k", "hook_twin") == 1
    clause = json.loads(report.read_text())["clauses"][0]
    assert clause["outcome"] == "xpassed"
    assert run_check("-k", "hook_twin") == 0


def test_settings_become_the_class_attributes() -> None:
    settings = runsettings.check(
        {
            "prompt": "hi",
            "isolation": "process",
            "env": {"A": "b"},
            "expected-failures": {"hygiene.fds": "leaks"},
            "models": {"other": {"expected-failures": {"hygiene.threads": "keeps one"}}},
            "attachment_types": ["image/png"],
        },
        "test",
    )
    attributes = runsettings.class_attributes(settings, "markov")
    assert attributes == {
        "prompt": "hi",
        "env": {"A": "b", "LLM_ASYNC_ISOLATION": "process"},
        "attachment_types": frozenset({"image/png"}),
        "expected_failures": {"hygiene.fds": "leaks"},
    }
    other = runsettings.class_attributes(settings, "other")["expected_failures"]
    assert other == {"hygiene.fds": "leaks", "hygiene.threads": "keeps one"}
