"""``llm async check``: run the suite against one installed model and print the clause table.

The check's exit code is a contract: 0 every clause passed (or was skipped for a capability
the model lacks, or failed as declared), 1 a clause failed, 2 a usage or preflight error
(bad settings, unknown model, a sample prompt the sync model itself cannot answer).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import runsettings

PACKAGE_DIR = Path(__file__).parent
CONFIG_FILE = PACKAGE_DIR / "runner.ini"
TEST_MODULE = PACKAGE_DIR / "test_conformance.py"

PASSED, FAILED, USAGE = 0, 1, 2


def pytest_args(model_id: str, json_path: str | None, extra_args: list[str]) -> list[str]:
    """The pytest command line for one check (without the executable)."""
    args = [
        str(TEST_MODULE),
        "-c",
        str(CONFIG_FILE),
        "--rootdir",
        str(PACKAGE_DIR),
        "--llm-model",
        model_id,
        "--tb=short",
        "-rN",
        # `llm async check` runs inside llm's CLI, which has imported pytest plugins' modules
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]
    if json_path:
        args += ["--llm-report-json", str(Path(json_path).resolve())]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        args += ["-p", "conformance.plugin", "-p", "pytest_timeout", "-p", "pytest_socket"]
    return args + list(extra_args)


def exit_code(pytest_code: int) -> int:
    """pytest's exit status as the check's: 0 passed, 1 a clause failed, 2 usage/preflight.

    pytest's 2 (interrupted: the preflight's ``pytest.exit``, Ctrl-C), 4 (usage error) and
    5 (no clause selected) are usage or preflight errors; an internal error is a failure.
    """
    import pytest

    if pytest_code == pytest.ExitCode.OK:
        return PASSED
    if pytest_code in (
        pytest.ExitCode.INTERRUPTED,
        pytest.ExitCode.USAGE_ERROR,
        pytest.ExitCode.NO_TESTS_COLLECTED,
    ):
        return USAGE
    return FAILED


@contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    """``os.environ[name] = value`` for the run (nothing when ``value`` is None)."""
    if value is None:
        yield
        return
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def main(
    model_id: str,
    json_path: str | None = None,
    extra_args: list[str] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> int:
    """Check ``model_id``; ``settings`` are checked :mod:`conformance.runsettings` values.

    Returns the check's exit code (see the module docstring).
    """
    import pytest

    args = pytest_args(model_id, json_path, list(extra_args or []))
    sys.stdout.write(f"Checking {model_id!r} with the llm conformance suite...\n")
    sys.stdout.flush()
    with tempfile.TemporaryDirectory(prefix="llm-async-check-") as scratch:
        if settings:
            written = runsettings.write_json(settings, Path(scratch) / "settings.json")
            args += ["--llm-config", str(written)]
        isolation = (settings or {}).get("isolation")
        with _environment(runsettings.ISOLATION_ENV_VAR, isolation):
            return exit_code(int(pytest.main(args)))


if __name__ == "__main__":  # python -m conformance.runner MODEL_ID [--json FILE] [pytest args]
    argv = sys.argv[1:]
    if not argv:
        sys.exit("usage: python -m conformance.runner MODEL_ID [--json FILE] [pytest args...]")
    target, rest = argv[0], argv[1:]
    report = None
    if "--json" in rest:
        index = rest.index("--json")
        report = rest[index + 1]
        del rest[index : index + 2]
    sys.exit(main(target, report, rest))
