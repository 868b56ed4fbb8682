"""Inline tox plugin: turn matrix/matrix.toml into tox environments such as llm036-markov.

Each cell x llm version of the matrix becomes one environment. Its settings come from the
``[cell]`` (suite runs) or ``[legacy]`` (llm older than the adapter supports) section of
tox.ini; this plugin only fills in what the matrix decides: labels (the lanes), requirements,
interpreter, extra environment variables, the cell's own tests (``commands_post``) and the
``{llm_cell}`` / ``{llm_version}`` values those sections substitute. Any env with an
``llmXXX`` factor (the unit envs too) also gets ``{llm_requirements}``: that llm version plus
the matrix's install rules for it.

llama-cpp-python is installed from the portable wheel .ci/llama_wheel.py built, by path; a cell
whose wheel is missing stops before installing anything, with the command that builds it.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tox.config.loader.memory import MemoryLoader
from tox.plugin import impl
from tox.report import HandledError

if TYPE_CHECKING:
    from tox.config.sets import ConfigSet, EnvConfigSet
    from tox.session.state import State
    from tox.tox_env.api import ToxEnv

ROOT = Path(__file__).resolve().parent
MATRIX_DIR = ROOT / "matrix"
MATRIX_MODULE = MATRIX_DIR / "cells.py"
MATRIX_FILE = MATRIX_DIR / "matrix.toml"
LLAMA_WHEEL_MODULE = ROOT / ".ci" / "llama_wheel.py"


def _load(name: str, path: Path) -> ModuleType:
    """A module of the checkout, loaded by path: tox's own environment lacks the project."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@cache
def _matrix_module() -> ModuleType:
    """matrix/cells.py."""
    return _load("_tox_conformance_matrix", MATRIX_MODULE)


@cache
def _llama_wheel() -> ModuleType:
    """.ci/llama_wheel.py: where the portable llama-cpp-python wheels are built."""
    return _load("_tox_llama_wheel", LLAMA_WHEEL_MODULE)


def _prebuilt(requirement: str) -> str:
    """``requirement`` itself, or a direct reference to its portable wheel when .ci/llama_wheel.py
    builds that package: the resolver then cannot pick the sdist and compile a native build."""
    builder = _llama_wheel()
    if not builder.is_portable_build(requirement):
        return requirement
    wheel = builder.built_wheel(requirement)
    if wheel is None:  # tox_on_install stops the env with the build command
        return requirement
    return f"{builder.package_name(requirement)} @ {wheel.as_uri()}"


def _missing_wheels(env: Any) -> list[str]:
    """The pins of ``env`` whose portable wheel has not been built yet."""
    builder = _llama_wheel()
    return [
        req
        for req in env.requirements
        if builder.is_portable_build(req) and builder.built_wheel(req) is None
    ]


@cache
def _suite_requirements() -> list[str]:
    """The ``conformance`` extra of pyproject.toml: what a legacy env installs to run the suite,
    since it installs the adapter itself with --no-deps (the adapter requires llm>=0.30)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # tox depends on tomli there
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return list(project["optional-dependencies"]["conformance"])


@cache
def _matrix() -> Any:
    """The validated matrix; a broken matrix file stops tox with the validator's message."""
    module = _matrix_module()
    try:
        matrix = module.load_matrix(MATRIX_FILE)
        matrix.check_tests(ROOT)
        return matrix
    except module.MatrixError as exc:
        raise HandledError(str(exc)) from exc


@cache
def _envs() -> dict[str, Any]:
    """Every matrix environment by name."""
    return {env.name: env for env in _matrix().envs()}


def _settings(env: Any) -> dict[str, Any]:
    """The tox settings of one matrix environment that tox.ini cannot know."""
    cell = env.cell
    settings: dict[str, Any] = {
        "base": ["legacy" if env.legacy else "cell", "testenv"],
        "labels": list(env.lanes),
        "base_python": [f"python{env.python}"],
        "deps": "\n".join(
            [*map(_prebuilt, env.requirements), *(_suite_requirements() if env.legacy else [])]
        ),
        "llm_cell": cell.name,
        "llm_version": env.llm_version,
    }
    if cell.no_deps and not env.legacy:
        settings["commands_pre"] = [
            "python -m pip install --no-deps " + " ".join(f'"{req}"' for req in cell.no_deps)
        ]
    if cell.tests and not env.legacy:
        # The fixture tests need the cell's plugin, which only this env has; they run after the
        # suite (also when it failed) and fail the env like it, with their own JUnit file.
        junit = ROOT / "reports" / f"{env.name}-fixtures.xml"
        settings["commands_post"] = [
            " ".join(["pytest", *cell.tests, "-p", "no:cacheprovider", f'--junitxml="{junit}"'])
        ]
    return settings


@impl
def tox_extend_envs() -> tuple[str, ...]:
    return tuple(_envs())


@impl
def tox_add_core_config(core_conf: ConfigSet, state: State) -> None:
    for name, env in _envs().items():
        state.conf.memory_seed_loaders[name].append(MemoryLoader(**_settings(env)))


@impl
def tox_add_env_config(env_conf: EnvConfigSet, state: State) -> None:
    env_conf.add_config(
        keys=["llm_cell"], of_type=str, default="", desc="conformance matrix cell of this env"
    )
    env_conf.add_config(
        keys=["llm_version"], of_type=str, default="", desc="llm version from the matrix"
    )
    env_conf.add_config(
        keys=["llm_requirements"],
        of_type=str,
        default=_llm_requirements(env_conf.env_name),
        desc="llm and its install rules, from the env name's llmXXX factor and the matrix",
    )
    env = _envs().get(env_conf.env_name)
    if env is not None and env.cell.env:
        env_conf["set_env"].update(env.cell.env)
    if env is not None and not env.legacy:
        # the suite reads the mode from LLM_ASYNC_ISOLATION (conformance.runconfig)
        env_conf["set_env"].update({"LLM_ASYNC_ISOLATION": env.isolation})


@impl
def tox_on_install(tox_env: ToxEnv, arguments: Any, section: str, of_type: str) -> None:
    """Stop a llama.cpp cell before its install when the portable wheel is missing: pip or uv
    would compile the sdist for this machine's CPU (about 12 minutes, and a wheel that crashed
    here), which is exactly what .ci/llama_wheel.py exists to prevent."""
    env = _envs().get(tox_env.name)
    if env is None or of_type != "deps":
        return
    missing = _missing_wheels(env)
    if missing:
        raise HandledError(
            f"{tox_env.name} installs {', '.join(missing)}, whose portable wheel is not built: "
            f"run `python .ci/llama_wheel.py build {' '.join(missing)}` first (about 5 minutes "
            "on 2 cores, once; bash .ci/run does it for its lanes)"
        )


def _llm_requirements(env_name: str) -> str:
    """``llm==0.30.*`` and ``openai<3`` for any env with an ``llm030`` factor, one per line."""
    matrix, factors = _matrix(), env_name.split("-")
    for version in matrix.llm_versions:
        if _matrix_module().env_factor(version) in factors:
            return "\n".join(matrix.llm_requirements(version))
    return ""
