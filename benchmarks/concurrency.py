"""Concurrency: wall time of 1…64 concurrent prompts of an IO-bound sync model against the ideal."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from .spec import Config, Job, JobResult
from .stats import TIMES, fmt, ratio, spread

NAME = "concurrency"
TITLE = "Concurrency"
HEADLINE = "wall_s"
CHUNKS = 10
INTERVAL = 0.02  # so one prompt takes 0.2 s of sleeping
COUNTS = {"full": (1, 2, 4, 8, 16, 32, 64), "quick": (1, 4, 16, 32, 64), "tiny": (1, 2)}
SERIAL_COUNTS = {"full": (1, 2, 4, 8), "quick": (1, 4), "tiny": (1, 2)}
REPEATS = {"full": 3, "quick": 2, "tiny": 1}
RAISED = (("LLM_ASYNC_MODEL_CONCURRENCY", "64"), ("LLM_ASYNC_MAX_THREADS", "64"))
V01_THREADS = 4
WARMUP = 0  # every prompt starts its own threads; there is nothing to warm up


def plan(cfg: Config) -> list[Job]:
    repeats = cfg.n_repeats(REPEATS)
    params = {"chunks": CHUNKS, "interval": INTERVAL}
    jobs = []
    for n in cfg.pick(COUNTS):
        group = f"n={n}"
        jobs += [
            Job(
                NAME,
                group,
                f"raised n={n}",
                "adapter",
                {**params, "n": n},
                env=RAISED,
                repeats=repeats,
            ),
            Job(NAME, group, f"native n={n}", "native", {**params, "n": n}, repeats=repeats),
            Job(NAME, group, f"0.1 n={n}", "v0.1", {**params, "n": n}, repeats=repeats),
        ]
        if n in cfg.pick(SERIAL_COUNTS):
            jobs.append(
                Job(NAME, group, f"default n={n}", "adapter", {**params, "n": n}, repeats=repeats)
            )
    return jobs


def measure(contender: str, params: dict[str, Any]) -> Any:
    from .contenders import model_for

    return _measure(model_for(contender), params)


async def _measure(model: Any, params: dict[str, Any]) -> dict[str, Any]:
    n, chunks, interval = int(params["n"]), int(params["chunks"]), float(params["interval"])

    async def one() -> int:
        count = 0
        async for _ in model.prompt("bench", chunks=chunks, interval=interval):
            count += 1
        return count

    start = time.perf_counter()
    counts = await asyncio.gather(*(one() for _ in range(n)))
    wall = time.perf_counter() - start
    if counts != [chunks] * n:
        raise AssertionError(f"chunk counts {counts}")
    return {"wall_s": wall, "n": n}


def policy_ideal(case: str, n: int) -> float:
    """The best wall time the contender's own policy allows."""
    one = CHUNKS * INTERVAL
    if case.startswith("default"):
        return n * one
    if case.startswith("0.1"):
        return math.ceil(n / V01_THREADS) * one
    return one


def summarize(results: list[JobResult], cfg: Config) -> dict[str, Any]:
    rows = []
    ideal = CHUNKS * INTERVAL
    for result in results:
        if result.skipped or not result.samples:
            continue
        n = int(result.job.params["n"])
        wall = spread(result.values("wall_s"))
        series = result.job.case.split(" ")[0]
        rows.append(
            {
                "series": series,
                "contender": result.job.contender,
                "n": n,
                "wall_s": wall,
                "ideal_s": ideal,
                "vs_ideal": ratio(wall["median"], ideal),
                "policy_ideal_s": policy_ideal(result.job.case, n),
                "vs_policy_ideal": ratio(wall["median"], policy_ideal(result.job.case, n)),
            }
        )
    rows.sort(key=lambda r: (r["series"], r["n"]))
    return {"chunks": CHUNKS, "interval_s": INTERVAL, "ideal_s": ideal, "rows": rows}


SERIES_LABELS = {
    "raised": "adapter, `LLM_ASYNC_MODEL_CONCURRENCY=64 LLM_ASYNC_MAX_THREADS=64`",
    "default": "adapter, default policy (one execute per model at a time)",
    "native": "native async model (`asyncio.sleep`)",
    "0.1": "0.1 adapter (4-thread pool)",
}


def markdown(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"Each prompt yields {summary['chunks']} chunks, sleeping {summary['interval_s']:g} s "
        f"before each (ideal alone: {summary['ideal_s']:g} s). Wall time of n prompts "
        "gathered at once (median of repeats); the policy's ideal is what its limit allows "
        f"(n {TIMES} 0.2 s serialised, ⌈n/4⌉ {TIMES} 0.2 s for 0.1's pool).",
        "",
        "| series | n | wall s | vs 0.2 s ideal | vs policy ideal |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in summary["rows"]:
        lines.append(
            f"| {SERIES_LABELS.get(row['series'], row['series'])} | {row['n']} | "
            f"{fmt(row['wall_s']['median'], 3)} | {fmt(row['vs_ideal'], 2, TIMES)} | "
            f"{fmt(row['vs_policy_ideal'], 2, TIMES)} |"
        )
    return lines
