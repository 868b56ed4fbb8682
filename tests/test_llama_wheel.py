""".ci/llama_wheel.py builds llama-cpp-python once per version and flags, portably, and never twice.

The compiler is not run here: ``pip wheel`` is replaced by a stand-in that records its command
and environment and drops a wheel file where pip would.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "llama_wheel.py"
PIN = "llama-cpp-python==0.3.36"
WHEEL_NAME = "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"


@pytest.fixture
def builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llama_wheel_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def pip_calls(builder: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def fake_run(command: list[str], check: bool, env: dict[str, str]) -> None:
        calls.append({"command": command, "env": env})
        wheel_dir = Path(command[command.index("--wheel-dir") + 1])
        (wheel_dir / WHEEL_NAME).write_bytes(b"not a real wheel")

    monkeypatch.setattr(builder.subprocess, "run", fake_run)
    return calls


def test_builds_portably_without_pips_cache(builder, pip_calls, tmp_path: Path) -> None:
    wheel = builder.build(PIN, tmp_path)
    assert wheel.name == WHEEL_NAME
    [call] = pip_calls
    assert "--no-cache-dir" in call["command"], "pip's cache ignores CMAKE_ARGS"
    assert call["command"][-1] == PIN
    flags = call["env"]["CMAKE_ARGS"].split()
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AVX512=OFF" in flags
    assert not any("march=native" in flag for flag in flags)
    assert call["env"]["CMAKE_BUILD_PARALLEL_LEVEL"] == "2"
    info = json.loads((wheel.parent / builder.BUILD_INFO).read_text())
    assert info["cmake_args"] == call["env"]["CMAKE_ARGS"] and info["requirement"] == PIN


def test_a_built_wheel_is_reused(builder, pip_calls, tmp_path: Path) -> None:
    first = builder.build(PIN, tmp_path)
    assert builder.build(PIN, tmp_path) == first
    assert builder.built_wheel(PIN, tmp_path) == first
    assert len(pip_calls) == 1


def test_the_directory_changes_with_version_and_flags(builder, monkeypatch, tmp_path) -> None:
    here = builder.wheel_dir(PIN, tmp_path)
    assert builder.wheel_dir("llama-cpp-python==0.3.37", tmp_path) != here
    monkeypatch.setitem(builder.PORTABLE_CMAKE_ARGS, "llama-cpp-python", "-DGGML_NATIVE=ON")
    assert builder.wheel_dir(PIN, tmp_path) != here
    assert builder.built_wheel(PIN, tmp_path) is None


def test_a_failed_build_leaves_no_wheel(builder, monkeypatch, tmp_path: Path) -> None:
    root = tmp_path / "wheels"

    def failing_run(command: list[str], check: bool, env: dict[str, str]) -> None:
        wheel_dir = Path(command[command.index("--wheel-dir") + 1])
        (wheel_dir / WHEEL_NAME).write_bytes(b"half")
        raise builder.subprocess.CalledProcessError(1, command)

    monkeypatch.setattr(builder.subprocess, "run", failing_run)
    with pytest.raises(builder.subprocess.CalledProcessError):
        builder.build(PIN, root)
    assert builder.built_wheel(PIN, root) is None
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []


def test_only_pinned_llama_cpp_python_is_built_here(builder) -> None:
    assert builder.is_portable_build("llama_cpp_python==0.3.36")
    assert not builder.is_portable_build("llama-cpp-python>=0.3")
    assert not builder.is_portable_build("torch==2.13.0")
    with pytest.raises(SystemExit):
        builder.main(["build", "torch==2.13.0"])
