"""Clauses run hermetically: temporary user dir and home, local network only, fixtures set up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

SUITE = """
import os
import socket
from pathlib import Path

import pytest
from conformance import SyncModelConformance, overridden
from pytest_socket import SocketConnectBlockedError
import sample_models


class TestHermetic(SyncModelConformance):
    model_id = "conformance-good"
    env = {sample_models.KEY_ENV_VAR: "sk-good", "CONFORMANCE_EXTRA": "from-env"}

    @overridden("inspects the environment the clauses run in")
    def test_streaming_order(self, llm_conformance):
        place = llm_conformance.bench.place
        user_dir = Path(os.environ["LLM_USER_PATH"])
        assert user_dir == place.user_dir and place.root in user_dir.parents
        assert Path(os.environ["HOME"]) == place.home
        assert Path.cwd() == place.work_dir
        assert os.environ["CONFORMANCE_EXTRA"] == "from-env"
        fixture_file = os.environ.get("LLM_MATCHED_RESPONSES_FILE")
        assert fixture_file and place.root in Path(fixture_file).parents
        assert Path(fixture_file).exists()
        with pytest.raises(SocketConnectBlockedError):
            socket.create_connection(("203.0.113.7", 80), timeout=1)
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        client = socket.create_connection(server.getsockname(), timeout=1)
        client.close()
        server.close()
        llm_conformance.note("hermetic")
"""


@pytest.mark.slow
def test_clauses_run_hermetically(
    run_suite: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "real-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    run = run_suite(
        SUITE,
        "-k",
        "streaming_order or keys or hygiene",
        "--llm-fixture",
        "matched-responses",
        matrix=True,
    )
    clauses = run.clauses("conformance-good")
    assert clauses["streaming.order"]["outcome"] == "passed", run.explain("conformance-good")
    assert clauses["streaming.order"]["reason"] == "hermetic"
    assert run.with_outcome("conformance-good", "failed", "error") == set()
    assert list(home.iterdir()) == []  # keys.stored wrote keys.json elsewhere


@pytest.mark.slow
def test_unknown_fixture_is_reported(run_suite: Any) -> None:
    run = run_suite(SUITE, "-k", "hook_twin", "--llm-fixture", "no-such-fixture", matrix=True)
    clause = run.clauses("conformance-good")["hook.twin"]
    assert clause["outcome"] == "error"
    assert "unknown fixture 'no-such-fixture'" in clause["reason"]
