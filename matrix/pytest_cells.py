"""Repo-only pytest plugin: ``--llm-cell NAME`` and ``--llm-fixture NAME`` for the matrix.

Load it with ``-p matrix.pytest_cells`` from a checkout (tox's cells do). It hands the suite a
cell loader and the fixture registry through ``conformance.runconfig``'s stash keys, so the
shipped suite never imports the matrix itself.
"""

from __future__ import annotations

import pytest

from conformance import runconfig


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llm-conformance")
    group.addoption(
        "--llm-cell",
        dest=runconfig.OPT_CELL,
        metavar="NAME",
        help="take model, fixtures, samples, capabilities and expected failures "
        "from this cell of matrix/matrix.toml",
    )
    group.addoption(
        "--llm-fixture",
        dest=runconfig.OPT_FIXTURE,
        metavar="NAME",
        action="append",
        default=[],
        help="set up matrix.fixtures.FIXTURES[NAME] in the temporary user "
        "dir before the model is looked up (repeatable)",
    )


def pytest_configure(config: pytest.Config) -> None:
    from matrix.cells import load_cell
    from matrix.fixtures import FIXTURES

    config.stash[runconfig.CELL_LOADER] = load_cell
    config.stash[runconfig.FIXTURE_REGISTRY] = FIXTURES
