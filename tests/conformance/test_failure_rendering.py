"""pytest never dies while rendering a clause's failure (CPython 3.11.7's AST recursion bug).

On 3.11.7 an ``ast.parse`` nested inside another (a finaliser run by a garbage collection in
the middle of pytest's ``ast.parse`` of a failure's source) raises ``SystemError: AST
constructor recursion depth mismatch`` and pytest ends in INTERNALERROR with a partial report.
asyncio's finalisers do exactly that when they log a task's unretrieved exception (3.11 parses
each traceback line for its carets).  The scenario below keeps such finalisers pending at
every collection, so without the plugin's guard the crash happens on 3.11.7 every time.
"""

from __future__ import annotations

from typing import Any

import pytest

# runs the suite in a subprocess: seconds alone, minutes on a loaded machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SUITE = """
import ast
import gc

import pytest
from conformance import SyncModelConformance, overridden
import sample_models

LEFT = [10**6]


class ParsesWhenCollected:
    '''Cyclic garbage whose finaliser parses source and leaves the next such garbage.'''

    def __init__(self):
        self.cycle = self

    def __del__(self):
        ast.parse("x + 1")
        if LEFT[0] > 0:
            LEFT[0] -= 1
            ParsesWhenCollected()


class TestRendering(SyncModelConformance):
    model_id = "conformance-good"
    env = {sample_models.KEY_ENV_VAR: "sk-good"}

    @overridden("keeps finalisers that parse pending at every collection, then fails")
    def test_streaming_order(self, llm_conformance, request):
        thresholds = gc.get_threshold()
        request.addfinalizer(lambda: (LEFT.__setitem__(0, 0), gc.set_threshold(*thresholds)))
        ParsesWhenCollected()
        gc.set_threshold(1, 1, 1)
        assert 1 == 2, "deliberately failing"
"""


def test_a_failure_renders_while_finalisers_parse(run_suite: Any) -> None:
    run = run_suite(SUITE, "-k", "streaming_order")
    output = "\n".join(run.result.outlines + run.result.errlines)
    assert "INTERNALERROR" not in output, output[-3000:]
    clause = run.clauses("conformance-good")["streaming.order"]
    assert clause["outcome"] == "failed" and "deliberately failing" in clause["reason"]
    assert run.result.ret == 1
