"""The head-to-head benchmark's machinery: turn order, the work clock, the 0.1 twin, verdicts."""

from __future__ import annotations

import importlib.util
import itertools
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llm
import pytest

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("benchmarks") is None:
    sys.path.insert(0, str(ROOT))

from benchmarks import head_to_head, stats, targets  # noqa: E402
from benchmarks.spec import Config, Job, JobResult  # noqa: E402


@pytest.mark.parametrize("count", range(1, 7))
def test_every_contender_follows_every_contender_once_per_cycle(count: int) -> None:
    order = head_to_head.de_bruijn(count)
    assert len(order) == count * count
    followed = [(order[i - 1], order[i]) for i in range(len(order))]  # cyclic
    assert sorted(followed) == sorted(itertools.product(range(count), repeat=2))


class _Burner:
    """A sync model stand-in whose generator measures its own CPU time per item."""

    def __init__(self) -> None:
        self.work = 0.0
        self.closed = False

    def execute(self, items: int) -> Iterator[int]:
        try:
            for i in range(items):
                start = time.thread_time()
                deadline = start + 0.002
                while time.thread_time() < deadline:
                    pass
                self.work += time.thread_time() - start
                yield i
        finally:
            self.closed = True


def test_work_clock_counts_the_models_own_cpu_and_closes_its_generator() -> None:
    model = _Burner()
    clock = head_to_head.WorkClock()
    clock.wrap(model)
    chunks = model.execute(5)
    assert [next(chunks), next(chunks)] == [0, 1]
    chunks.close()  # the consumer stops early: the model's finally must run
    assert model.closed
    assert clock.seconds >= model.work > 0.003
    assert list(model.execute(3)) == [0, 1, 2]  # the wrapper stays in place


V01_RELEASE = """
import llm


class Wrapper(llm.AsyncModel):  # like the release: llm's default Options, not the model's
    def __init__(self, sync_model):
        self._sync_model = sync_model
        self.model_id = sync_model.model_id

    async def execute(self, prompt, stream, response, conversation):
        yield "unused"


def register_models(register, model_aliases):
    for alias in model_aliases:
        if alias.model and not alias.async_model:
            alias.async_model = Wrapper(alias.model)
"""


def test_the_v01_twin_comes_from_the_releases_own_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loaded from the file under another name, its missing Options patched from the model."""
    release = tmp_path / "llm_all_models_async.py"
    release.write_text(V01_RELEASE)
    monkeypatch.delitem(sys.modules, head_to_head.V01_MODULE, raising=False)
    twin = head_to_head._v01_twin(str(release), "options-model")
    assert type(twin).Options is not twin._sync_model.Options
    assert type(twin).__module__ == head_to_head.V01_MODULE
    assert isinstance(twin._sync_model, llm.Model)
    assert twin._sync_model.model_id == "options-model"
    assert twin.Options is twin._sync_model.Options
    other = head_to_head._v01_twin(str(release), "options-model")
    assert other._sync_model is not twin._sync_model  # a fresh sync instance per twin


def _first_chunk_result(adapter: list[float], v01: list[float], again: list[float]) -> JobResult:
    result = JobResult(Job(head_to_head.NAME, "first chunk", "first chunk", "turns", {"cycles": 1}))
    for a, v, b in zip(adapter, v01, again, strict=True):
        result.samples.append({"adapter|ttfc_us": a, "v0.1|ttfc_us": v, "adapter again|ttfc_us": b})
    return result


def _separate_processes(mine: float, theirs: float) -> dict[str, Any]:
    return {
        "rows": [
            {"contender": "adapter", "ttfc_us": {"median": mine}},
            {"contender": "v0.1", "ttfc_us": {"median": theirs}},
        ]
    }


def test_first_chunk_is_judged_in_one_process_with_its_noise_floor_beside_it() -> None:
    """Separate processes say slower (their regimes), the turns in one process say faster:
    the verdict follows the turns, and the detail shows both and the floor."""
    faster = _first_chunk_result([90, 180, 95, 185], [100, 200, 104, 205], [91, 178, 96, 186])
    summary = head_to_head.summarize([faster], Config(profile="tiny"))
    verdict = targets.first_chunk(_separate_processes(150, 148), summary)
    assert verdict["verdict"] == "met", verdict
    assert "noise floor" in verdict["detail"] and "separate worker processes" in verdict["detail"]
    assert "150 vs 148 µs" in verdict["detail"]

    slower = _first_chunk_result([110, 220, 112, 215], [100, 200, 104, 205], [111, 221, 110, 214])
    summary = head_to_head.summarize([slower], Config(profile="tiny"))
    assert targets.first_chunk(_separate_processes(140, 148), summary)["verdict"] == "not met"
    text = "\n".join(head_to_head.markdown(summary))
    assert "adapter again" in text and "vs 0.1" in text


def test_first_chunk_without_the_turns_is_judged_on_separate_processes() -> None:
    assert targets.first_chunk(_separate_processes(150, 148))["verdict"] == "not met"
    assert targets.first_chunk(_separate_processes(140, 148), None)["verdict"] == "met"


def _real_result(speed: dict[str, float], share: dict[str, float]) -> JobResult:
    """Eight repeats of one real model: tokens/s follow each instance's own speed (its work
    CPU per token) and the share of wall time in that work."""
    result = JobResult(Job(head_to_head.NAME, "smollm2", "smollm2", "turns", {"cycles": 1}))
    drift = [1.0, 1.2, 0.9, 1.1, 1.0, 0.95, 1.05, 1.15]  # the machine, round by round
    for factor in drift:
        sample: dict[str, Any] = {}
        for name in head_to_head.REAL_CONTENDERS:
            work_ms = 12.0 / speed[name] / factor
            sample[f"{name}|work_cpu_ms_per_token"] = work_ms
            sample[f"{name}|work_share"] = share[name]
            sample[f"{name}|tokens_per_s"] = 1000 * share[name] / work_ms
            sample[f"{name}|tokens"] = 100
        result.samples.append(sample)
    return result


def test_real_models_are_judged_speed_adjusted_in_one_process() -> None:
    """The adapter's Llama instance runs 4% slower than sync's (as instances do): the raw
    ratio says 0.96x, the share of time in the model's work says what the path costs."""
    separate = {"rows": [{"model": "smollm2", "contender": "adapter", "vs_sync": 0.95}]}
    speed = {"sync": 1.0, "adapter": 0.96, "v0.1": 1.0, "adapter again": 1.0}
    share = {"sync": 0.99, "adapter": 0.99, "v0.1": 0.985, "adapter again": 0.99}
    summary = head_to_head.summarize([_real_result(speed, share)], Config(profile="tiny"))
    adapter = next(r for r in summary["cases"][0]["rows"] if r["contender"] == "adapter")
    assert adapter["vs_sync"] == pytest.approx(0.96)
    assert adapter["work_speed_vs_sync"] == pytest.approx(0.96)
    assert adapter["vs_sync_adjusted"] == pytest.approx(1.0)
    verdict = targets.real_models(separate, summary)
    assert verdict["verdict"] == "met", verdict
    assert "smollm2 (one process): speed-adjusted 1.000" in verdict["detail"]
    assert "in separate worker processes: smollm2 0.950" in verdict["detail"]

    share["adapter"] = 0.98  # the path now takes 1% of the time from the model's work
    summary = head_to_head.summarize([_real_result(speed, share)], Config(profile="tiny"))
    verdict = targets.real_models(separate, summary)
    assert verdict["verdict"] == "not met"  # 0.995x 0.1, speed-adjusted
    assert f"0.995{stats.TIMES} 0.1" in verdict["detail"]
    # Without the turns, the separate processes' raw ratio is what is judged.
    assert targets.real_models(separate, None)["verdict"] == "not met"
