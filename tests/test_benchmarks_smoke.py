"""Smoke test of the benchmark harness: every code path on tiny sizes, no timing assertions."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("benchmarks") is None:
    sys.path.insert(0, str(ROOT))

from benchmarks import cli, families, plots, report, stats, targets, venv01  # noqa: E402
from benchmarks.spec import Config  # noqa: E402

VERDICTS = {"met", "not met", "not measured"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """One tiny run of every family (the 0.1 environment is not created)."""
    out = tmp_path_factory.mktemp("bench")
    cfg = Config(
        profile="tiny",
        out=out,
        warmup=0,
        v01=False,
        plots=False,
        quiet=True,
        timeout=120.0,
        logs=out / "logs",
    )
    return cli.run(cfg, command="python -m benchmarks --profile tiny"), out


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.xdist_group("tiny_run")  # one worker runs the module's tiny benchmark once
def test_every_family_runs_and_reports(tiny_run: tuple[dict[str, Any], Path]) -> None:
    result, _ = tiny_run
    assert set(result["families"]) == set(families.BY_NAME)
    for name, section in result["families"].items():
        assert section["summary"] is not None, name
        assert not section["errors"], (name, section["errors"])
        raw_samples = [s for r in section["raw"] for s in r["samples"]]
        if name != "real":  # real models may be missing here; they are skipped with a reason
            assert raw_samples, f"{name} produced no sample"
        for job in section["raw"]:
            assert job["samples"] or job["skipped"], (name, job["case"], job["contender"])
    skipped = result["families"]["per_chunk"]["skipped"]
    assert any("v0.1" in what and "disabled" in why for what, why in skipped.items())


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.xdist_group("tiny_run")  # one worker runs the module's tiny benchmark once
def test_shapes_report_the_models_own_time_outside_its_work(
    tiny_run: tuple[dict[str, Any], Path],
) -> None:
    """Written by the model from whichever process runs it: the worker process too."""
    result, _ = tiny_run
    for job in result["families"]["shapes"]["raw"]:
        if job["skipped"]:
            continue
        for sample in job["samples"]:
            outside = sample["outside_us_per_token"]
            assert outside is not None and outside > 0, (job["case"], job["contender"], sample)
            # The work's CPU time lies inside the reply the consumer timed.
            assert sample["work_cpu_us_per_token"] > 0, sample
            assert 0 < sample["work_share"] <= 1, sample


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.xdist_group("tiny_run")  # one worker runs the module's tiny benchmark once
def test_wakeup_reports_wakeups_gil_handovers_and_the_machines_idle_driver(
    tiny_run: tuple[dict[str, Any], Path],
) -> None:
    """The figure that explains the hand-over costs on this machine, and the fact behind it."""
    result, out = tiny_run
    rows = result["families"]["wakeup"]["summary"]["rows"]
    assert [row["blocked_us"] for row in rows] == list(families.BY_NAME["wakeup"].BLOCKED_US)
    for row in rows:
        assert 0 < row["p50_us"] <= row["p90_us"], row
    handovers = result["families"]["wakeup"]["summary"]["handovers"]
    assert [row["case"] for row in handovers] == list(families.BY_NAME["wakeup"].HANDOVER_CASES)
    for row in handovers:
        assert 0 < row["p50_us"] <= row["p90_us"] and 0 <= row["handed_over"] <= 1, row
    assert "| idle CPUs (cpuidle) |" in (out / "results.md").read_text()


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.xdist_group("tiny_run")  # one worker runs the module's tiny benchmark once
def test_outputs_are_written(tiny_run: tuple[dict[str, Any], Path]) -> None:
    _, out = tiny_run
    data = json.loads((out / report.JSON_NAME).read_text())
    assert data["schema"] == "llm-all-models-async-benchmarks/1"
    for key in ("python", "llm", "cpu", "cpus", "platform", "date_utc"):
        assert data["meta"][key] is not None, key
    assert data["workers"]["0.2"]["llm_version"] == data["meta"]["llm"]
    assert [t["verdict"] for t in data["targets"]] and all(
        t["verdict"] in VERDICTS for t in data["targets"]
    )
    text = (out / report.MARKDOWN_NAME).read_text()
    assert "python -m benchmarks" in text
    for family in families.ORDER:
        assert f"## {family.TITLE}" in text


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.xdist_group("tiny_run")  # one worker runs the module's tiny benchmark once
def test_plots(tiny_run: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    reason = plots.available()
    if reason:
        pytest.skip(reason)
    result, _ = tiny_run
    written, skipped = plots.write(result["families"], tmp_path)
    assert skipped is None
    assert {Path(p).name for p in written} == {name for name, _ in plots.PLOTS.values()}
    for path in written:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_targets_without_data_are_not_measured() -> None:
    assert {t["verdict"] for t in targets.evaluate({})} == {"not measured"}


def test_produced_ahead_target_compares_with_the_buffer() -> None:
    summary = {"rows": [{"contender": "adapter", "buffer": 4, "ahead_max": 5, "held_kb": 1.0}]}
    verdict = targets.produced_ahead(summary)
    assert verdict["verdict"] == "not met"
    summary["rows"][0]["ahead_max"] = 4
    assert targets.produced_ahead(summary)["verdict"] == "met"


def _shape_rounds(contender: str, walls_ms: list[float], work_ms: list[float]) -> Any:
    from benchmarks import shapes
    from benchmarks.spec import Job, JobResult

    result = JobResult(Job("shapes", "gil", "gil", contender, {"chunks": 100}))
    for wall, work in zip(walls_ms, work_ms, strict=True):
        sample = {
            "tokens_per_s": 1000 / wall,
            "ms_per_token": wall,
            "cpu_ms_per_token": wall,
            "switches_per_token": 0.0,
            "outside_us_per_token": 10.0,
        }
        sample.update(shapes.read_model_log(_model_log(f"10.0 {work * 1000}"), sample))
        result.samples.append(sample)
    return result


def _model_log(text: str) -> str:
    import tempfile

    handle, path = tempfile.mkstemp()
    with open(handle, "w", encoding="utf-8") as log:
        log.write(text + "\n")
    return path


def test_shapes_speed_adjusted_ratio_ignores_the_machines_drift() -> None:
    """Rounds in which the machine ran the adapter's model 10% slower: the raw ratio says
    0.91x, the adjusted one says what the path costs (nothing here), and the target is
    judged on the adjusted one with the raw one beside it."""
    from benchmarks import shapes

    speeds = [1.0, 1.2, 0.9, 1.1, 1.0]
    sync = _shape_rounds("sync", [s * 1.0 for s in speeds], [s * 0.98 for s in speeds])
    slow = [s * 1.1 for s in speeds]
    adapter = _shape_rounds("adapter", [s * 1.0 for s in slow], [s * 0.98 for s in slow])
    summary = shapes.summarize([sync, adapter], Config(profile="tiny"))
    row = next(r for r in summary["rows"] if r["contender"] == "adapter")
    assert row["vs_sync"] == pytest.approx(1 / 1.1)
    assert row["work_speed_vs_sync"] == pytest.approx(1 / 1.1)
    assert row["vs_sync_adjusted"] == pytest.approx(1.0)
    verdict = targets.throughput("shapes", summary, "shape")
    assert verdict["verdict"] == "met", verdict
    assert "speed-adjusted 1.000" in verdict["detail"] and "raw 0.909" in verdict["detail"]
    assert any("speed-adjusted" in line for line in shapes.markdown(summary))

    # A path that takes 5% of the wall time from the model's work fails, however fast the
    # machine ran that contender.
    fast = [s / 1.1 for s in speeds]
    costly = _shape_rounds("adapter", [s / 0.93 for s in fast], [s * 0.98 for s in fast])
    summary = shapes.summarize([sync, costly], Config(profile="tiny"))
    row = next(r for r in summary["rows"] if r["contender"] == "adapter")
    assert row["vs_sync"] > 1 and row["vs_sync_adjusted"] == pytest.approx(0.93)
    assert targets.throughput("shapes", summary, "shape")["verdict"] == "not met"


def test_throughput_target_uses_the_raw_ratio_where_the_speed_was_not_measured() -> None:
    summary = {
        "rows": [
            {"model": "m", "contender": "adapter", "vs_sync": 0.96, "vs_v01": 1.01},
        ]
    }
    assert targets.throughput("real", summary, "model")["verdict"] == "not met"
    summary["rows"][0]["vs_sync"] = 0.98
    assert targets.throughput("real", summary, "model")["verdict"] == "met"
    summary["rows"][0]["vs_v01"] = 0.99
    verdict = targets.throughput("real", summary, "model")
    assert verdict["verdict"] == "not met" and "speed-adjusted" not in verdict["value"]


def test_first_chunk_shows_both_regimes_of_the_repeats() -> None:
    """Repeats at 170 or 250 µs for either contender: the quartiles show the two groups the
    median falls between, and the paired ratio sits beside it."""
    from benchmarks import first_chunk
    from benchmarks.spec import Job, JobResult

    def repeats(contender: str, values: list[float]) -> JobResult:
        result = JobResult(Job("first_chunk", "all", "default", contender, {}))
        for value in values:
            result.samples.append(
                {"ttfc_us": value, "ttfc_p90_us": value, "response_us": value, "prompts": 1}
            )
        return result

    adapter = repeats("adapter", [170, 250, 170, 250, 250, 170, 250, 170])
    v01 = repeats("v0.1", [250, 170, 170, 250, 170, 170, 250, 170])
    summary = first_chunk.summarize([adapter, v01], Config(profile="tiny"))
    verdict = targets.first_chunk(summary)
    assert verdict["verdict"] == "not met"  # medians 210 against 170
    span = f"170{stats.DASH}250"
    assert f"quartiles {span} µs against {span}" in verdict["detail"], verdict["detail"]
    assert "0.1's time" in verdict["detail"]
    assert any("repeats' quartiles" in line for line in first_chunk.markdown(summary))


def test_percentiles() -> None:
    assert stats.percentile([1, 2, 3, 4], 50) == 2.5
    assert stats.percentile([5], 99) == 5
    assert stats.median([]) != stats.median([])  # NaN for no data
    assert stats.fmt(float("nan")) == stats.DASH


def test_paired_interval_brackets_the_paired_median_and_narrows_with_rounds() -> None:
    few = [1.0, 0.9, 1.1, 0.95, 1.05]
    base = [1.0] * len(few)
    low, high = stats.paired_interval(few, base)
    assert low <= stats.paired_ratio(few, base) <= high
    many_low, many_high = stats.paired_interval(few * 8, base * 8)
    assert many_high - many_low < high - low
    assert stats.paired_interval(few, base) == (low, high)  # the same samples, the same words
    unpaired = stats.paired_interval([1.0, 2.0, 3.0], [1.0, 2.0])
    assert all(math.isnan(v) for v in unpaired)


def test_v01_environment_is_reused_when_its_stamp_matches(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = venv01.python_of(venv)
    python.parent.mkdir(parents=True)
    python.write_text("")
    (venv / venv01.STAMP).write_text(json.dumps({"requirements": venv01.requirements()}))
    assert venv01.ensure(venv, tmp_path / "pip.log") == python
    assert not (tmp_path / "pip.log").exists()  # pip never ran
    assert any(req.startswith("llm==") for req in venv01.requirements())
    assert venv01.RELEASE in venv01.requirements()


def test_every_family_has_the_interface() -> None:
    for family in families.ORDER:
        for attr in ("NAME", "TITLE", "plan", "measure", "summarize", "markdown"):
            assert hasattr(family, attr), (family.NAME, attr)
        cfg = Config(profile="tiny")
        if hasattr(family, "context"):
            jobs = family.plan(cfg, {"env": {}, "skipped": {}})
        else:
            jobs = family.plan(cfg)
            assert jobs, family.NAME
        assert all(job.family == family.NAME for job in jobs)


def test_every_contender_has_a_plot_colour() -> None:
    from benchmarks.contenders import ALL_CONTENDERS

    assert set(ALL_CONTENDERS) <= set(plots.COLOURS)


@pytest.mark.timeout(120)
def test_instruction_counts_are_differences_per_prompt(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each figure is (large run - small run) / (large - small): start-up cancels out. The
    callgrind runs themselves take minutes, so they are replaced here by a fixed count."""
    import subprocess

    from benchmarks import instructions

    assert instructions.COLLECTED.search("==123== Collected : 3257776342").group(1) == "3257776342"
    costs = {"adapter": (600, 30), "native": (500, 20)}  # per prompt, per chunk

    def fake_count(python: Path, contender: str, measure: str, count: int) -> int:
        return 1_000_000 + costs[contender][measure == "chunk"] * count

    monkeypatch.setattr(instructions, "_count", fake_count)
    monkeypatch.setattr(instructions.shutil, "which", lambda name: "/usr/bin/valgrind")
    assert instructions.main(["--contenders", "adapter", "native"]) == 0
    out = capsys.readouterr().out
    assert "| adapter | 600 | 30 | 1.50\u00d7 |" in out
    assert "| native | 500 | 20 | 1.00\u00d7 |" in out
    # the child each callgrind run starts: a real prompt through the adapter, no valgrind
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.instructions", "--child", "adapter", "prompt", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert child.returncode == 0, child.stderr
