"""``llm async check``: run the suite against one installed model and print the clause table."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).parent
CONFIG_FILE = PACKAGE_DIR / "runner.ini"
TEST_MODULE = PACKAGE_DIR / "test_conformance.py"


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


def main(model_id: str, json_path: str | None = None, extra_args: list[str] | None = None) -> int:
    """Run the conformance suite for ``model_id``; returns pytest's exit code (0: all passed)."""
    import pytest

    args = pytest_args(model_id, json_path, list(extra_args or []))
    sys.stdout.write(f"Checking {model_id!r} with the llm conformance suite...\n")
    sys.stdout.flush()
    return int(pytest.main(args))


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
