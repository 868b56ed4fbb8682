"""Time to first chunk: from ``model.prompt()`` to the first chunk in the consumer's hands."""

from __future__ import annotations

import time
from typing import Any

from .contenders import PROCESS_ENV
from .spec import Config, Job, JobResult, find
from .stats import (
    DASH,
    TIMES,
    fmt,
    interval,
    median,
    paired_interval,
    paired_ratio,
    percentile,
    ratio,
    spread,
)

NAME = "first_chunk"
TITLE = "Time to first chunk"
HEADLINE = "ttfc_us"
CONTENDERS = ("adapter", "process", "native", "sync", "v0.1")
PROMPTS = {"full": 200, "quick": 60, "tiny": 3}
# One repeat's median moves by about a fifth from the next on a shared host, whoever runs;
# 40 repeats (about a minute) put the median of each contender within a few per cent.
REPEATS = {"full": 40, "quick": 3, "tiny": 1}
CHUNKS = 8


def plan(cfg: Config) -> list[Job]:
    params = {"prompts": cfg.pick(PROMPTS), "chunks": CHUNKS}
    return [
        Job(
            NAME,
            "all",
            "default",
            c,
            params,
            env=PROCESS_ENV if c == "process" else (),
            repeats=cfg.n_repeats(REPEATS),
        )
        for c in CONTENDERS
    ]


def measure(contender: str, params: dict[str, Any]) -> Any:
    """One repeat: ``prompts`` prompts in a row, each timed to its first and last chunk."""
    from .contenders import model_for

    model = model_for(contender)
    if contender == "sync":
        firsts, totals = [], []
        for _ in range(int(params["prompts"])):
            start = time.perf_counter()
            first = None
            for _chunk in model.prompt("bench", chunks=int(params["chunks"])):
                if first is None:
                    first = time.perf_counter() - start
            firsts.append(first)
            totals.append(time.perf_counter() - start)
        return _sample(firsts, totals)
    return _measure_async(
        model, int(params["prompts"]), int(params["chunks"]), cold=contender == "process"
    )


async def _measure_async(
    model: Any, prompts: int, chunks: int, *, cold: bool = False
) -> dict[str, Any]:
    """``cold``: stop the warm workers first and report the first prompt's first chunk apart
    (it starts a worker: interpreter, plugins, model lookup); the rest are warm."""
    cold_us = None
    if cold:
        from .contenders import stop_workers

        stop_workers()
        start = time.perf_counter()
        async for _chunk in model.prompt("bench", chunks=chunks):
            cold_us = (time.perf_counter() - start) * 1e6
            break
    firsts, totals = [], []
    for _ in range(prompts):
        start = time.perf_counter()
        first = None
        async for _chunk in model.prompt("bench", chunks=chunks):
            if first is None:
                first = time.perf_counter() - start
        firsts.append(first)
        totals.append(time.perf_counter() - start)
    return {**_sample(firsts, totals), "cold_us": cold_us}


def _sample(firsts: list[float | None], totals: list[float]) -> dict[str, Any]:
    values = [f * 1e6 for f in firsts if f is not None]
    return {
        "ttfc_us": median(values),
        "ttfc_p90_us": percentile(values, 90),
        "response_us": median([t * 1e6 for t in totals]),
        "prompts": len(totals),
    }


def summarize(results: list[JobResult], cfg: Config) -> dict[str, Any]:
    rows = []
    for contender in CONTENDERS:
        result = find(results, "default", contender)
        if result is None:
            continue
        ttfc = result.values("ttfc_us")
        rows.append(
            {
                "contender": contender,
                "ttfc_us": spread(ttfc),
                # Repeats fall into two groups on the project's VM, for every contender
                # (cause not established); the quartiles show both.
                "ttfc_quartiles_us": (percentile(ttfc, 25), percentile(ttfc, 75)),
                "ttfc_p90_us": median(result.values("ttfc_p90_us")),
                "response_us": median(result.values("response_us")),
                "cold_us": median(result.values("cold_us")),
            }
        )
    native = next((r["ttfc_us"]["median"] for r in rows if r["contender"] == "native"), None)
    v01 = find(results, "default", "v0.1")
    for row in rows:
        row["vs_native"] = ratio(row["ttfc_us"]["median"], native or 0.0)
        mine = find(results, "default", row["contender"])
        if v01 is not None and mine is not None:
            # Per-repeat ratios: neighbours in time, so the host's drift cancels.
            row["vs_v01"] = paired_ratio(mine.values("ttfc_us"), v01.values("ttfc_us"))
            row["vs_v01_interval"] = paired_interval(mine.values("ttfc_us"), v01.values("ttfc_us"))
    return {"prompts": cfg.pick(PROMPTS), "chunks": CHUNKS, "rows": rows}


def markdown(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"{summary['prompts']} prompts of {summary['chunks']} chunks per repeat, one after "
        'another; medians over prompts, then over repeats. "vs 0.1" is the median of '
        "per-repeat ratios of the warm first chunk (contenders alternate within each "
        "repeat), with a 95% bootstrap interval in brackets. The quartiles are those of the "
        "repeats' medians: a repeat's first chunks run in one of two regimes on a VM, and "
        "which one a repeat gets moves the median of a contender more than the adapter does.",
        "",
        "| contender | first chunk µs (median, warm) | repeats' quartiles µs | p90 µs | "
        "whole response µs | vs native "
        "| vs 0.1 | cold first chunk µs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary["rows"]:
        lines.append(
            f"| {row['contender']} | {fmt(row['ttfc_us']['median'])} | "
            f"{fmt(row['ttfc_quartiles_us'][0], 0)}{DASH}{fmt(row['ttfc_quartiles_us'][1], 0)} | "
            f"{fmt(row['ttfc_p90_us'])} | {fmt(row['response_us'])} | "
            f"{fmt(row['vs_native'], 2, TIMES)} | "
            f"{fmt(row.get('vs_v01'), 3, TIMES)}{interval(row.get('vs_v01_interval'))} | "
            f"{fmt(row.get('cold_us'))} |"
        )
    lines += [
        "",
        "Cold: the process contender's first prompt after its workers were stopped (a fresh "
        "interpreter loads llm's plugins and looks the model up); other contenders have no "
        "cold start beyond the first prompt of the run.",
    ]
    return lines
