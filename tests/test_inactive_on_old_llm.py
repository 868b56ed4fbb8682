"""On llm 0.29 (adapter installed with --no-deps) llm keeps working and the adapter says once
that it is inactive.  Runs only where llm < 0.30 is installed: ``tox -e llm029-markov``."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pytest

LLM_VERSION = tuple(int(part) for part in version("llm").split(".")[:2])

pytestmark = pytest.mark.skipif(
    LLM_VERSION >= (0, 30),
    reason=f"needs llm 0.29 (installed: {version('llm')}); run `tox -e llm029-markov`",
)

WARNING = "llm-all-models-async needs llm 0.30 or later"


def _llm(*args: str, user_dir) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLM_USER_PATH": str(user_dir)}
    return subprocess.run(
        [sys.executable, "-m", "llm", *args], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.mark.parametrize("args", [("--version",), ("models",), ("plugins",)])
def test_llm_keeps_working_and_warns_once(args, tmp_path):
    result = _llm(*args, user_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(WARNING) == 1
    assert "inactive" in result.stderr


def test_plugin_is_listed_and_no_twins_exist(tmp_path):
    assert "llm-all-models-async" in _llm("plugins", user_dir=tmp_path).stdout
    import llm

    import llm_all_models_async

    assert llm_all_models_async.ACTIVE is False
    assert "0.29" in (llm_all_models_async.INACTIVE_REASON or "")
    assert all(not llm_all_models_async.is_twin(m) for m in llm.get_async_models())


def test_llm_async_models_explains_why_it_is_inactive(tmp_path):
    result = _llm("async", "models", user_dir=tmp_path)
    assert result.returncode != 0
    assert WARNING in result.stderr
