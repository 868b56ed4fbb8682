"""Per-chunk cost through llm: adapted sync model vs native async vs llm's sync path, per buffer."""

from __future__ import annotations

import time
from typing import Any

from .contenders import PROCESS_ENV
from .spec import Config, Job, JobResult, find
from .stats import DASH, TIMES, fmt, paired_ratio, spread

NAME = "per_chunk"
TITLE = "Per-chunk cost"
HEADLINE = "us_per_chunk"
BUFFERS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)  # up to the default, LLM_ASYNC_BUFFER=1024
CHUNKS = {"full": 20_000, "quick": 5_000, "tiny": 50}
REPEATS = {"full": 9, "quick": 5, "tiny": 1}


def plan(cfg: Config) -> list[Job]:
    """Default-buffer contenders and the adapter at every buffer size, all in one group."""
    params = {"chunks": cfg.pick(CHUNKS)}
    repeats = cfg.n_repeats(REPEATS)
    jobs = [
        Job(NAME, "all", "default", contender, params, repeats=repeats)
        for contender in ("adapter", "native", "sync", "v0.1")
    ]
    jobs.append(Job(NAME, "all", "default", "process", params, env=PROCESS_ENV, repeats=repeats))
    buffers = BUFFERS if cfg.profile != "tiny" else (1, 256)
    jobs += [
        Job(
            NAME,
            "all",
            f"buffer={b}",
            "adapter",
            params,
            env=(("LLM_ASYNC_BUFFER", str(b)),),
            repeats=repeats,
        )
        for b in buffers
    ]
    return jobs


def measure(contender: str, params: dict[str, Any]) -> Any:
    """One repeat: stream ``chunks`` one-character chunks and time them."""
    from .contenders import model_for

    model = model_for(contender)
    chunks = int(params["chunks"])
    if contender == "sync":
        start = time.perf_counter()
        count = sum(1 for _ in model.prompt("bench", chunks=chunks))
        return _sample(start, count, chunks)
    return _measure_async(model, chunks)


async def _measure_async(model: Any, chunks: int) -> dict[str, Any]:
    start = time.perf_counter()
    count = 0
    async for _ in model.prompt("bench", chunks=chunks):
        count += 1
    return _sample(start, count, chunks)


def _sample(start: float, count: int, expected: int) -> dict[str, Any]:
    elapsed = time.perf_counter() - start
    if count != expected:
        raise AssertionError(f"expected {expected} chunks, got {count}")
    return {"seconds": elapsed, "chunks": count, "us_per_chunk": elapsed / count * 1e6}


def summarize(results: list[JobResult], cfg: Config) -> dict[str, Any]:
    """Median µs per chunk of each contender, ratios to native, and the buffer sweep."""

    def values(case: str, contender: str) -> list[float]:
        result = find(results, case, contender)
        return result.values("us_per_chunk") if result else []

    native = values("default", "native")
    rows = [
        {
            "contender": c,
            **spread(values("default", c)),
            "vs_native": paired_ratio(values("default", c), native),
        }
        for c in ("adapter", "process", "native", "sync", "v0.1")
    ]
    sweep = []
    for result in results:
        if result.job.case.startswith("buffer="):
            mine = result.values("us_per_chunk")
            sweep.append(
                {
                    "buffer": int(result.job.case.split("=", 1)[1]),
                    **spread(mine),
                    "vs_native": paired_ratio(mine, native),
                }
            )
    sweep.sort(key=lambda row: row["buffer"])
    return {"chunks": cfg.pick(CHUNKS), "default": rows, "sweep": sweep}


def _cell(row: dict[str, Any]) -> str:
    return f"{fmt(row['median'])} [{fmt(row['min'])}{DASH}{fmt(row['max'])}]"


def markdown(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"Median µs per chunk over {summary['chunks']:,} one-character chunks, consumed with "
        f"`async for` (llm's sync path: `for`). Min{DASH}max of the repeats in brackets; "
        '"vs native" is the median of the per-round ratios to the native model run in the '
        "same round.",
        "",
        "| contender | µs/chunk | vs native async |",
        "|---|---:|---:|",
    ]
    for row in summary["default"]:
        lines.append(f"| {row['contender']} | {_cell(row)} | {fmt(row['vs_native'], 2, TIMES)} |")
    if summary["sweep"]:
        lines += [
            "",
            "Adapter across `LLM_ASYNC_BUFFER`:",
            "",
            "| buffer | µs/chunk | vs native async |",
            "|---:|---:|---:|",
        ]
        for row in summary["sweep"]:
            lines.append(f"| {row['buffer']} | {_cell(row)} | {fmt(row['vs_native'], 2, TIMES)} |")
    return lines
