"""Load and validate matrix/matrix.toml, the single description of every plugin cell.

Only the standard library (plus tomli on Python 3.10) is used, so tox's inline plugin and the
GitHub workflows can read the matrix without installing the project. Run as a script it checks
the file and lists environments: ``python matrix/cells.py envs --lane fast``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

MATRIX_PATH = Path(__file__).with_name("matrix.toml")
# tox points this at the checkout's matrix file, so an installed copy of the suite reads it too
MATRIX_ENV_VAR = "LLM_CONFORMANCE_MATRIX"
LATEST = "latest"
ENV_PATTERN = re.compile(r"^llm(?P<version>\d{3}|latest)-(?P<cell>[a-z0-9][a-z0-9-]*)$")
# The adapter's isolation modes (LLM_ASYNC_ISOLATION); a cell runs in each mode it lists.
# thread envs keep the plain name (llm036-markov); other modes add a suffix (llm036-markov-process).
ISOLATIONS = ("thread", "process")
DEFAULT_ISOLATION = "thread"

# The suite owns the names inside a cell's samples and capabilities tables (conformance.samples,
# conformance.capabilities) and rejects unknown ones; here only their shape is checked.
SAMPLE_TABLES = ("options", "invalid_options", "prompt_options", "schema")
SAMPLE_STRINGS = ("prompt", "system", "failing_prompt", "tool_prompt", "schema_prompt")

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CLAUSE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
_VERSION = re.compile(r"^\d+\.\d+$")
_PINNED = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==[^=,;\s]+$")
_TEST_FILE = re.compile(r"^tests/[A-Za-z0-9_/]+\.py$")
_TOP_FIELDS = frozenset({"schema", "defaults", "llm", "lanes", "cells"})
_CELL_FIELDS = frozenset(
    {
        "plugin",
        "requirement",
        "model_id",
        "fixtures",
        "tests",
        "pre_install",
        "extra_requirements",
        "no_deps",
        "env",
        "python",
        "llm_versions",
        "lanes",
        "lane_llm_versions",
        "pending",
        "notes",
        "samples",
        "capabilities",
        "expected_failures",
        "isolation",
        "isolation_lanes",
    }
)


class MatrixError(ValueError):
    """matrix.toml is malformed; the message names the cell and the field at fault."""


@dataclass(frozen=True)
class InstallRule:
    """Extra requirements for some llm versions (install pitfalls of old releases)."""

    versions: list[str]
    requirements: list[str]
    reason: str


@dataclass(frozen=True)
class Lane:
    """A named selection of cells; ``llm_versions`` None means every version a cell lists."""

    name: str
    description: str
    llm_versions: list[str] | None


@dataclass(frozen=True)
class Cell:
    """One plugin and model, with how to install, set up and check it."""

    name: str
    plugin: str
    requirement: str
    model_id: str
    fixtures: list[str]
    pre_install: list[str]
    extra_requirements: list[str]
    env: dict[str, str]
    samples: dict[str, Any]
    capabilities: dict[str, Any]
    expected_failures: dict[str, Any]
    lanes: list[str]
    python: str | None
    llm_versions: list[str]
    no_deps: list[str] = field(default_factory=list)
    lane_llm_versions: dict[str, list[str]] = field(default_factory=dict)
    pending: str | None = None
    notes: str = ""
    isolation: list[str] = field(default_factory=lambda: [DEFAULT_ISOLATION])
    # mode -> the only lanes that mode's envs join (default: every lane of the cell)
    isolation_lanes: dict[str, list[str]] = field(default_factory=dict)
    tests: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Env:
    """One cell on one llm version: a tox environment and one CI job."""

    name: str
    cell: Cell
    llm_version: str
    legacy: bool
    lanes: list[str]
    python: str
    requirements: list[str]
    isolation: str = DEFAULT_ISOLATION


def version_key(version: str) -> tuple[int, ...]:
    """Sort key for an llm version of the matrix; ``latest`` sorts last."""
    if version == LATEST:
        return (sys.maxsize,)
    return tuple(int(part) for part in version.split("."))


def env_factor(version: str) -> str:
    """The tox factor of an llm version: ``0.36`` -> ``llm036``, ``latest`` -> ``llmlatest``."""
    if version == LATEST:
        return "llmlatest"
    major, minor = version.split(".")
    return f"llm{int(major)}{int(minor):02d}"


def env_name(cell: str, version: str, isolation: str = DEFAULT_ISOLATION) -> str:
    """The tox environment name of ``cell`` on llm ``version`` in one isolation mode."""
    suffix = "" if isolation == DEFAULT_ISOLATION else f"-{isolation}"
    return f"{env_factor(version)}-{cell}{suffix}"


def parse_env_name(name: str) -> tuple[str, str] | None:
    """``(llm version, cell)`` for an environment name such as ``llm036-markov``, else None
    (a mode suffix such as ``-process`` is not part of the cell: see :func:`env_isolation`)."""
    match = ENV_PATTERN.match(name)
    if match is None:
        return None
    digits = match["version"]
    version = LATEST if digits == LATEST else f"{int(digits[0])}.{int(digits[1:])}"
    cell = match["cell"]
    mode = env_isolation(name)
    if mode != DEFAULT_ISOLATION:
        cell = cell[: -len(mode) - 1]
    return version, cell


def env_isolation(name: str) -> str:
    """The isolation mode an environment name carries (``thread`` without a suffix)."""
    for mode in ISOLATIONS:
        if mode != DEFAULT_ISOLATION and name.endswith(f"-{mode}"):
            return mode
    return DEFAULT_ISOLATION


@dataclass(frozen=True)
class Matrix:
    """The whole matrix file, validated."""

    path: Path
    python: str
    llm_versions: list[str]
    adapter_min: str
    install_rules: list[InstallRule]
    lanes: dict[str, Lane]
    cells: dict[str, Cell]

    def is_legacy(self, version: str) -> bool:
        """Whether the adapter is expected to stay inactive on this llm version."""
        return version_key(version) < version_key(self.adapter_min)

    def llm_requirement(self, version: str) -> str:
        """The pip requirement installing llm ``version`` (its newest patch release)."""
        return "llm" if version == LATEST else f"llm=={version}.*"

    def llm_requirements(self, version: str) -> list[str]:
        """llm ``version`` and the install rules that apply to it (e.g. ``openai<3``)."""
        reqs = [self.llm_requirement(version)]
        for rule in self.install_rules:
            if version in rule.versions:
                reqs.extend(rule.requirements)
        return reqs

    def requirements(self, cell: Cell, version: str) -> list[str]:
        """Everything installed in one resolver step for ``cell`` on llm ``version``."""
        reqs = self.llm_requirements(version)
        reqs.extend(cell.pre_install)
        reqs.append(cell.requirement)
        reqs.extend(cell.extra_requirements)
        return reqs

    def lane_versions(self, cell: Cell, lane: str) -> list[str]:
        """The llm versions ``cell`` runs on in ``lane`` (empty if it is not in the lane)."""
        if cell.pending is not None or lane not in cell.lanes:
            return []
        if lane in cell.lane_llm_versions:
            return list(cell.lane_llm_versions[lane])
        wanted = self.lanes[lane].llm_versions
        return [v for v in cell.llm_versions if wanted is None or v in wanted]

    def envs(self, lanes: Iterable[str] | None = None) -> list[Env]:
        """Every environment (cell x llm version), or those in any of ``lanes``."""
        selected = None if lanes is None else set(lanes)
        unknown = sorted((selected or set()) - set(self.lanes))
        if unknown:
            raise MatrixError(f"{self.path.name}: unknown lane(s) {', '.join(unknown)}")
        result = []
        for cell in self.cells.values():
            for version in cell.llm_versions:
                env_lanes = [
                    lane for lane in self.lanes if version in self.lane_versions(cell, lane)
                ]
                if selected is not None and not selected.intersection(env_lanes):
                    continue
                legacy = self.is_legacy(version)
                # On a legacy llm the adapter is inactive: there is no mode to tell apart.
                for isolation in [DEFAULT_ISOLATION] if legacy else cell.isolation:
                    allowed = cell.isolation_lanes.get(isolation)
                    mode_lanes = [lane for lane in env_lanes if allowed is None or lane in allowed]
                    if selected is not None and not selected.intersection(mode_lanes):
                        continue
                    result.append(
                        Env(
                            name=env_name(cell.name, version, isolation),
                            cell=cell,
                            llm_version=version,
                            legacy=legacy,
                            lanes=mode_lanes,
                            python=cell.python or self.python,
                            requirements=self.requirements(cell, version),
                            isolation=isolation,
                        )
                    )
        return result

    def fixture_names(self) -> set[str]:
        """Every fixture a runnable (not pending) cell uses."""
        return {
            name for cell in self.cells.values() if cell.pending is None for name in cell.fixtures
        }

    def check_tests(self, root: Path) -> None:
        """Raise MatrixError if a cell names a test file that is not in the checkout ``root``."""
        for cell in self.cells.values():
            for index, test in enumerate(cell.tests):
                if not (root / test).is_file():
                    raise MatrixError(
                        f"{self.path.name}: cell {cell.name!r}, field 'tests[{index}]': "
                        f"no file {test} in {root}"
                    )

    def check_fixtures(self, available: Iterable[str]) -> None:
        """Raise MatrixError if a runnable cell names a fixture not in ``available``."""
        known = set(available)
        for cell in self.cells.values():
            if cell.pending is not None:
                continue
            for index, name in enumerate(cell.fixtures):
                if name not in known:
                    raise MatrixError(
                        f"{self.path.name}: cell {cell.name!r}, field 'fixtures[{index}]': "
                        f"unknown fixture {name!r} (known: {', '.join(sorted(known)) or 'none'})"
                    )


class _Reader:
    """Typed access to one TOML table with errors that say where the problem is."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data = data
        self.where = where

    def fail(self, key: str, problem: str) -> MatrixError:
        return MatrixError(f"{self.where}, field {key!r}: {problem}")

    def only(self, allowed: Iterable[str]) -> None:
        extra = sorted(set(self.data) - set(allowed))
        if extra:
            raise self.fail(extra[0], f"unknown field (allowed: {', '.join(sorted(allowed))})")

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        if key not in self.data:
            if required:
                raise self.fail(key, "is required")
            return default
        value = self.data[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, not {value!r}")
        return value

    def strings(self, key: str, default: list[str] | None = None) -> list[str]:
        value = self.data.get(key, [] if default is None else default)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, f"must be a list of non-empty strings, not {value!r}")
        if len(set(value)) != len(value):
            raise self.fail(key, f"lists an entry twice: {value!r}")
        return list(value)

    def table(self, key: str) -> dict[str, Any]:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table, not {value!r}")
        return value

    def versions(self, key: str, allowed: list[str], default: list[str]) -> list[str]:
        value = self.strings(key, default)
        unknown = [v for v in value if v not in allowed]
        if unknown:
            raise self.fail(key, f"unknown llm version(s) {unknown} (known: {', '.join(allowed)})")
        return value


def _requirement_name(requirement: str) -> str:
    name = re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _check_pinned(reader: _Reader, key: str, values: list[str]) -> None:
    for index, value in enumerate(values):
        if not _PINNED.match(value):
            raise reader.fail(f"{key}[{index}]", f"must be pinned with ==, not {value!r}")


def _load_samples(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    reader = _Reader(data, where)
    for key in SAMPLE_STRINGS:
        reader.text(key)
    for key in SAMPLE_TABLES:
        reader.table(key)
    if "conversation_prompts" in data:
        reader.strings("conversation_prompts")
    return dict(data)


def _load_cell(name: str, data: Any, matrix: dict[str, Any], where: str) -> Cell:
    if not _NAME.match(name):
        raise MatrixError(f"{where}: cell name {name!r} must be lower-case letters, digits and -")
    if not isinstance(data, dict):
        raise MatrixError(f"{where}: must be a table")
    reader = _Reader(data, where)
    reader.only(_CELL_FIELDS)
    plugin = reader.text("plugin", required=True)
    requirement = reader.text("requirement", required=True)
    assert plugin is not None and requirement is not None
    if not _PINNED.match(requirement):
        raise reader.fail("requirement", f"must be pinned with ==, not {requirement!r}")
    if _requirement_name(requirement) != _requirement_name(plugin):
        raise reader.fail("requirement", f"{requirement!r} does not install plugin {plugin!r}")
    model_id = reader.text("model_id", required=True)
    assert model_id is not None
    fixtures = reader.strings("fixtures")
    for index, fixture in enumerate(fixtures):
        if not _NAME.match(fixture):
            raise reader.fail(f"fixtures[{index}]", f"{fixture!r} is not a fixture name")
    tests = reader.strings("tests")
    for index, test in enumerate(tests):
        if not _TEST_FILE.match(test):
            raise reader.fail(f"tests[{index}]", f"{test!r} is not a file under tests/")
    pre_install = reader.strings("pre_install")
    _check_pinned(reader, "pre_install", pre_install)
    no_deps = reader.strings("no_deps")
    _check_pinned(reader, "no_deps", no_deps)
    extra = reader.strings("extra_requirements")

    env = reader.table("env")
    for key, value in env.items():
        if not _IDENT.match(key) or not isinstance(value, str):
            raise reader.fail(f"env.{key}", "must map a variable name to a string")

    python = reader.text("python")
    if python is not None and not _VERSION.match(python):
        raise reader.fail("python", f"must look like '3.11', not {python!r}")

    all_versions: list[str] = matrix["versions"]
    llm_versions = reader.versions("llm_versions", all_versions, all_versions)
    if not llm_versions:
        raise reader.fail("llm_versions", "must not be empty")

    lanes = reader.strings("lanes")
    for index, lane in enumerate(lanes):
        if lane not in matrix["lanes"]:
            raise reader.fail(
                f"lanes[{index}]", f"unknown lane {lane!r} (known: {', '.join(matrix['lanes'])})"
            )
    lane_versions: dict[str, list[str]] = {}
    for lane, versions in reader.table("lane_llm_versions").items():
        key = f"lane_llm_versions.{lane}"
        if lane not in lanes:
            raise reader.fail(key, f"the cell is not in lane {lane!r}")
        lane_versions[lane] = _Reader({key: versions}, where).versions(key, llm_versions, [])

    pending = reader.text("pending")
    notes = reader.text("notes", "") or ""
    isolation = reader.strings("isolation", [DEFAULT_ISOLATION])
    for index, mode in enumerate(isolation):
        if mode not in ISOLATIONS:
            raise reader.fail(
                f"isolation[{index}]", f"unknown mode {mode!r} (known: {', '.join(ISOLATIONS)})"
            )
    if not isolation:
        raise reader.fail("isolation", "must list at least one mode")
    isolation_lanes: dict[str, list[str]] = {}
    for mode, modes_lanes in reader.table("isolation_lanes").items():
        key = f"isolation_lanes.{mode}"
        if mode not in isolation:
            raise reader.fail(key, f"the cell does not run in mode {mode!r}")
        chosen = _Reader({key: modes_lanes}, where).strings(key)
        unknown = [lane for lane in chosen if lane not in lanes]
        if unknown:
            raise reader.fail(key, f"lane(s) {unknown} are not lanes of the cell")
        isolation_lanes[mode] = chosen

    samples = _load_samples(reader.table("samples"), f"{where}, field 'samples'")

    capabilities = reader.table("capabilities")
    for key, value in capabilities.items():
        if not _IDENT.match(key) or isinstance(value, dict):
            raise reader.fail(f"capabilities.{key}", "must name a capability with a plain value")

    expected = reader.table("expected_failures")
    for clause, reason in expected.items():
        if not _CLAUSE.match(clause):
            raise reader.fail(
                f"expected_failures.{clause}", "is not a clause id like 'streaming.incremental'"
            )
        if isinstance(reason, dict):  # {reason, match}: validated by conformance.expectations
            reason = reason.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise reader.fail(f"expected_failures.{clause}", "needs a non-empty reason")

    return Cell(
        name=name,
        plugin=plugin,
        requirement=requirement,
        model_id=model_id,
        fixtures=fixtures,
        pre_install=pre_install,
        extra_requirements=extra,
        env=dict(env),
        samples=samples,
        capabilities=dict(capabilities),
        expected_failures=dict(expected),
        lanes=lanes,
        python=python,
        llm_versions=llm_versions,
        no_deps=no_deps,
        lane_llm_versions=lane_versions,
        pending=pending,
        notes=notes,
        isolation=isolation,
        isolation_lanes=isolation_lanes,
        tests=tests,
    )


def parse_matrix(data: Mapping[str, Any], path: Path = MATRIX_PATH) -> Matrix:
    """Validate parsed TOML ``data`` and build the Matrix."""
    where = path.name
    top = _Reader(data, where)
    top.only(_TOP_FIELDS)
    if data.get("schema") != 1:
        raise top.fail("schema", f"must be 1, not {data.get('schema')!r}")

    defaults = _Reader(top.table("defaults"), f"{where} [defaults]")
    defaults.only({"python"})
    python = defaults.text("python", required=True)
    assert python is not None
    if not _VERSION.match(python):
        raise defaults.fail("python", f"must look like '3.11', not {python!r}")

    llm = _Reader(top.table("llm"), f"{where} [llm]")
    llm.only({"versions", "adapter_min", "install"})
    versions = llm.strings("versions")
    if not versions:
        raise llm.fail("versions", "must list at least one llm version")
    for index, version in enumerate(versions):
        if version != LATEST and not _VERSION.match(version):
            raise llm.fail(
                f"versions[{index}]", f"must look like '0.36' or be 'latest': {version!r}"
            )
    if versions != sorted(versions, key=version_key):
        raise llm.fail("versions", "must be in ascending order")
    adapter_min = llm.text("adapter_min", required=True)
    assert adapter_min is not None
    if adapter_min not in versions:
        raise llm.fail("adapter_min", f"{adapter_min!r} is not one of the versions")

    rules = []
    raw_rules = llm.data.get("install", [])
    if not isinstance(raw_rules, list):
        raise llm.fail("install", "must be an array of tables ([[llm.install]])")
    for index, raw in enumerate(raw_rules):
        rule = _Reader(
            raw if isinstance(raw, dict) else {}, f"{where} [[llm.install]] #{index + 1}"
        )
        rule.only({"versions", "requirements", "reason"})
        reason = rule.text("reason", required=True)
        assert reason is not None
        rules.append(
            InstallRule(
                versions=rule.versions("versions", versions, []),
                requirements=rule.strings("requirements"),
                reason=reason,
            )
        )

    lanes: dict[str, Lane] = {}
    for name, raw in top.table("lanes").items():
        lane = _Reader(raw if isinstance(raw, dict) else {}, f"{where} [lanes.{name}]")
        lane.only({"description", "llm_versions"})
        if not _NAME.match(name):
            raise MatrixError(f"{where}: lane name {name!r} must be lower-case letters, digits, -")
        description = lane.text("description", required=True)
        assert description is not None
        lane_versions = (
            lane.versions("llm_versions", versions, []) if "llm_versions" in raw else None
        )
        lanes[name] = Lane(name, description, lane_versions)

    context = {"versions": versions, "lanes": lanes}
    cells = {
        name: _load_cell(name, raw, context, f"{where}: cell {name!r}")
        for name, raw in top.table("cells").items()
    }
    if not cells:
        raise top.fail("cells", "must define at least one cell")
    matrix = Matrix(path, python, versions, adapter_min, rules, lanes, cells)
    seen: dict[str, str] = {}
    for env in matrix.envs():
        if env.name in seen:
            raise MatrixError(f"{where}: cells {seen[env.name]!r} and {env.cell.name!r} clash")
        seen[env.name] = env.cell.name
    return matrix


def load_matrix(path: Path | str | None = None) -> Matrix:
    """Read and validate the matrix file: ``path``, else $LLM_CONFORMANCE_MATRIX, else the
    matrix.toml beside this module."""
    if path is None:
        path = os.environ.get(MATRIX_ENV_VAR) or MATRIX_PATH
    path = Path(path)
    if not path.is_file():
        raise MatrixError(f"{path}: no matrix file there")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise MatrixError(f"{path.name}: not valid TOML: {exc}") from exc
    return parse_matrix(data, path)


def load_cell(name: str, path: Path | str | None = None) -> Cell:
    """The cell called ``name``; MatrixError lists the known cells when there is none."""
    matrix = load_matrix(path)
    try:
        return matrix.cells[name]
    except KeyError:
        known = ", ".join(matrix.cells)
        raise MatrixError(f"{matrix.path.name}: no cell {name!r} (known: {known})") from None


def github_matrix(matrix: Matrix, lanes: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """A GitHub Actions ``strategy.matrix`` with one job per environment in ``lanes``."""
    include = [
        {
            "env": env.name,
            "cell": env.cell.name,
            "llm": env.llm_version,
            "isolation": env.isolation,
            "python": env.python,
            "legacy": env.legacy,
            "llamacpp": "llamacpp" in env.lanes,
            "torch": any(req.startswith("torch==") for req in env.cell.pre_install),
            # a source-only requirement CI builds once and caches as a wheel
            "build": next(
                (req for req in env.cell.pre_install if req.startswith("llama-cpp-python")), ""
            ),
        }
        for env in matrix.envs(lanes)
    ]
    return {"include": include}


def main(argv: list[str] | None = None) -> int:
    """Command line: ``check``, ``envs [--lane L] [--json]``, ``github --lane L``,
    ``llm-requirements VERSION``."""
    parser = argparse.ArgumentParser(prog="matrix.cells", description=__doc__)
    parser.add_argument("--file", type=Path, default=None, help="matrix file to read")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="validate the matrix file")
    envs = sub.add_parser("envs", help="list environment names")
    envs.add_argument("--lane", action="append", help="only environments in this lane")
    envs.add_argument("--json", action="store_true", help="print details as JSON")
    github = sub.add_parser("github", help="print a strategy matrix for GitHub Actions")
    github.add_argument("--lane", action="append", required=True)
    llm = sub.add_parser("llm-requirements", help="print what installs one llm version")
    llm.add_argument("version", help="an llm version of the matrix, e.g. 0.30 or latest")
    args = parser.parse_args(argv)
    try:
        matrix = load_matrix(args.file)
        if args.command == "check":
            matrix.check_tests(Path(__file__).resolve().parent.parent)
            print(f"{matrix.path.name}: {len(matrix.cells)} cells, {len(matrix.envs())} envs, ok")
        elif args.command == "envs":
            selected = matrix.envs(args.lane)
            if args.json:
                rows = [
                    {
                        "env": e.name,
                        "cell": e.cell.name,
                        "llm": e.llm_version,
                        "isolation": e.isolation,
                        "legacy": e.legacy,
                        "lanes": e.lanes,
                        "python": e.python,
                        "requirements": e.requirements,
                    }
                    for e in selected
                ]
                print(json.dumps(rows, indent=2))
            else:
                print("\n".join(e.name for e in selected))
        elif args.command == "llm-requirements":
            if args.version not in matrix.llm_versions:
                known = ", ".join(matrix.llm_versions)
                raise MatrixError(f"unknown llm version {args.version!r} (known: {known})")
            print("\n".join(matrix.llm_requirements(args.version)))
        else:
            print(json.dumps(github_matrix(matrix, args.lane), separators=(",", ":")))
    except MatrixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
