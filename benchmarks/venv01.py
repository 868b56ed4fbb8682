"""Create (once) the virtual environment holding the 0.1 adapter release next to the same llm."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from .contenders import REPO_ROOT

RELEASE = "llm-all-models-async==0.1"
DEFAULT_PATH = REPO_ROOT / ".cache" / "bench-0.1-venv"
STAMP = "bench-stamp.json"


def python_of(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def requirements(extras: list[str] | None = None) -> list[str]:
    """What the 0.1 environment needs: the release and this environment's exact llm."""
    llm_version = metadata.version("llm")
    wanted = [f"llm=={llm_version}", RELEASE]
    if _release(llm_version) < (0, 33):
        wanted.append("openai<3")  # fresh installs of llm 0.29-0.32 break with openai 3
    return [*wanted, *(extras or [])]


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _read_stamp(venv: Path) -> list[str]:
    try:
        return list(json.loads((venv / STAMP).read_text())["requirements"])
    except (OSError, ValueError, KeyError):
        return []


def ensure(venv: Path | None, log: Path, extras: list[str] | None = None) -> Path:
    """Return the Python of the 0.1 environment, creating or updating it as needed.

    The environment is reused while it holds the same requirements (recorded in a stamp
    file); pip output goes to ``log``. Raises ``RuntimeError`` when pip fails.
    """
    venv = venv or DEFAULT_PATH
    python = python_of(venv)
    wanted = requirements(extras)
    have = _read_stamp(venv)
    if python.exists() and all(req in have for req in wanted):
        return python
    with open(log, "ab") as out:
        if not python.exists():
            venv.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [sys.executable, "-m", "venv", str(venv)],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        missing = [req for req in wanted if req not in have]
        done = subprocess.run(
            [str(python), "-m", "pip", "install", *missing], stdout=out, stderr=subprocess.STDOUT
        )
    if done.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(missing)} failed (see {log})")
    merged = {_name(req): req for req in [*have, *wanted]}
    (venv / STAMP).write_text(json.dumps({"requirements": sorted(merged.values())}))
    return python


def _name(requirement: str) -> str:
    return requirement.split("==", 1)[0].split(" @ ", 1)[0].strip().lower()
