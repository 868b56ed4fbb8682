"""Build llama-cpp-python once, for any x86-64 CPU, into a wheel directory every cell installs.

The promise: a llama.cpp cell never compiles llama-cpp-python itself. ``build`` compiles each
llama-cpp-python pin of the selected matrix lanes with ``PORTABLE_CMAKE_ARGS`` into
``.cache/llama-wheels/<name>-<version>-<flags hash>/`` (skipped when that directory already
holds the wheel); toxfile.py installs the wheel from there by path and stops a cell with a
clear message when it is missing, instead of letting pip or uv build a native one.

Why these flags: llama.cpp's default build (GGML_NATIVE) compiles for the build machine's CPU.
On this project's 2-core CI machines that turns on AVX-512 and AMX kernels, takes about 12
minutes, and the wheel segfaults in ``llama_cpp/_internals.py`` ``decode`` on any prompt longer
than one token. With GGML_NATIVE off and AVX2/FMA/F16C (every x86-64 CPU since 2013) the build
takes about 4.5 minutes on 2 cores and the wheel runs on any runner that restores it.

Why ``--no-cache-dir``: pip's (and uv's) wheel cache is keyed by the sdist, not by CMAKE_ARGS,
so a native build cached once would silently be reused by a later "portable" build.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
MATRIX_MODULE = ROOT / "matrix" / "cells.py"
WHEEL_ROOT = ROOT / ".cache" / "llama-wheels"

# The packages built here and the CMake flags that make their wheel portable.
PORTABLE_CMAKE_ARGS = {
    "llama-cpp-python": (
        "-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF "
        "-DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
    ),
}
# 2 compile jobs: the CI machines have 2 cores; more only adds memory pressure
BUILD_PARALLEL_LEVEL = "2"
BUILD_INFO = "build.json"


def package_name(requirement: str) -> str:
    """``llama-cpp-python`` for ``llama_cpp_python==0.3.36`` (PEP 503 normalised)."""
    name = requirement.split("==", 1)[0].split("[", 1)[0].strip()
    return "-".join(name.replace("_", "-").replace(".", "-").lower().split("-"))


def is_portable_build(requirement: str) -> bool:
    """Whether ``requirement`` is a package this module builds instead of pip or uv."""
    return "==" in requirement and package_name(requirement) in PORTABLE_CMAKE_ARGS


def wheel_dir(requirement: str, root: Path = WHEEL_ROOT) -> Path:
    """Where the portable wheel of ``requirement`` (pinned with ==) lives: keyed by the
    version, the CMake flags and the CPU architecture, so changing any of them rebuilds."""
    name = package_name(requirement)
    version = requirement.split("==", 1)[1].strip()
    key = "\n".join([name, version, PORTABLE_CMAKE_ARGS[name], platform.machine()])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return root / f"{name}-{version}-{digest}"


def built_wheel(requirement: str, root: Path = WHEEL_ROOT) -> Path | None:
    """The wheel file built for ``requirement``, or None if it was not built yet."""
    wheels = sorted(wheel_dir(requirement, root).glob("*.whl"))
    return wheels[0] if wheels else None


def build(requirement: str, root: Path = WHEEL_ROOT) -> Path:
    """Build the portable wheel of ``requirement`` unless it is there; return its path.

    A lock file serialises concurrent builds of one key; the wheel is built in a scratch
    directory and moved into place, so a killed build never leaves a half-written wheel."""
    target = wheel_dir(requirement, root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = built_wheel(requirement, root)
        if found is not None:
            print(f"{requirement}: using {found}", file=sys.stderr)
            return found
        flags = PORTABLE_CMAKE_ARGS[package_name(requirement)]
        env = {
            **os.environ,
            "CMAKE_ARGS": flags,
            "CMAKE_BUILD_PARALLEL_LEVEL": BUILD_PARALLEL_LEVEL,
        }
        print(f"{requirement}: building with CMAKE_ARGS={flags!r}", file=sys.stderr)
        started = time.monotonic()
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
        try:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "--no-cache-dir",
                    "--no-deps",
                    "--no-binary",
                    package_name(requirement),
                    "--wheel-dir",
                    scratch,
                    requirement,
                ],
                check=True,
                env=env,
            )
            seconds = round(time.monotonic() - started)
            info = {
                "requirement": requirement,
                "cmake_args": flags,
                "build_parallel_level": BUILD_PARALLEL_LEVEL,
                "machine": platform.machine(),
                "seconds": seconds,
                "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (scratch / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
            shutil.rmtree(target, ignore_errors=True)
            scratch.chmod(0o755)
            os.replace(scratch, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        found = built_wheel(requirement, root)
        assert found is not None, f"pip wheel left no wheel in {target}"
        print(f"{requirement}: built {found.name} in {seconds} s", file=sys.stderr)
        return found


def _matrix_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_ci_conformance_matrix", MATRIX_MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def lane_requirements(lanes: list[str] | None) -> list[str]:
    """The pins this module builds that any environment of ``lanes`` (None: all) installs."""
    matrix = _matrix_module().load_matrix()
    found = {
        req for env in matrix.envs(lanes) for req in env.requirements if is_portable_build(req)
    }
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    """``build [--lane L ...] [REQUIREMENT ...]`` builds; ``path`` prints wheel paths."""
    parser = argparse.ArgumentParser(prog=".ci/llama_wheel.py", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("build", "path"))
    parser.add_argument("requirements", nargs="*", help="pins such as llama-cpp-python==0.3.36")
    parser.add_argument(
        "--lane", action="append", help="every pin the matrix lane installs (repeatable)"
    )
    args = parser.parse_args(argv)
    wanted = list(args.requirements)
    if args.lane or not wanted:
        wanted += lane_requirements(args.lane)
    unknown = [req for req in wanted if not is_portable_build(req)]
    if unknown:
        known = ", ".join(PORTABLE_CMAKE_ARGS)
        parser.error(f"{unknown[0]!r} is not a pinned package this script builds ({known})")
    for requirement in dict.fromkeys(wanted):
        if args.command == "build":
            print(build(requirement))
        else:
            found = built_wheel(requirement)
            print(found if found is not None else f"{wheel_dir(requirement)} (not built)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
