"""Event-loop lag (p50, p99, max) while 0, 1, 2 or 4 CPU-bound sync models stream in threads
(or, for the ``process`` contender, in worker processes)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from .contenders import PROCESS_ENV
from .spec import Config, Job, JobResult
from .stats import fmt, median, percentile

NAME = "loop_lag"
TITLE = "Event-loop lag"
HEADLINE = "p99_ms"
STREAMS = {"full": (0, 1, 2, 4), "quick": (0, 1, 2, 4), "tiny": (0, 1)}
DURATION = {"full": 1.5, "quick": 0.75, "tiny": 0.1}
REPEATS = {"full": 3, "quick": 2, "tiny": 1}
WORK_STEPS = 40_000  # pure-Python loop steps per chunk: about 1 ms on the reference machine
TICK = 0.001  # the probe coroutine asks to sleep this long, over and over
RAISED = (("LLM_ASYNC_MODEL_CONCURRENCY", "8"),)
TARGET_P99_MS = 20.0
WARMUP = 0  # the k=0 round warms each worker up

_work_ms: list[float] = []


def plan(cfg: Config) -> list[Job]:
    repeats = cfg.n_repeats(REPEATS)
    jobs = []
    for k in cfg.pick(STREAMS):
        params = {"streams": k, "duration": cfg.pick(DURATION), "steps": WORK_STEPS}
        group = f"k={k}"
        jobs += [
            Job(NAME, group, f"k={k}", "adapter", params, env=RAISED, repeats=repeats),
            Job(
                NAME, group, f"k={k}", "process", params, env=RAISED + PROCESS_ENV, repeats=repeats
            ),
            Job(NAME, group, f"k={k}", "v0.1", params, repeats=repeats),
            Job(NAME, group, f"k={k}", "native", params, repeats=repeats),
        ]
    return jobs


def work_ms(steps: int) -> float:
    """How long ``steps`` loop steps take here (best of 5), recorded with every sample.

    The step count is fixed rather than calibrated, so every worker process (and the 0.1
    environment) does exactly the same work per chunk.
    """
    from .models import burn

    if not _work_ms:
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            burn(steps)
            best = min(best, time.perf_counter() - start)
        _work_ms.append(best * 1000)
    return _work_ms[0]


def measure(contender: str, params: dict[str, Any]) -> Any:
    from .contenders import model_for

    return _measure(contender, model_for(contender), params)


async def _measure(contender: str, model: Any, params: dict[str, Any]) -> dict[str, Any]:
    from .models import drop_probe, new_probe

    k, duration = int(params["streams"]), float(params["duration"])
    steps = int(params["steps"])
    per_chunk_ms = work_ms(steps)
    # Streams end on their own just after the window: a contender that starves the loop
    # (0.1's consumer can drain an ever-refilled queue without yielding; a native model doing
    # CPU work never yields) then shows a lag as long as the window instead of hanging.
    chunks = max(1, int(duration * 1000 / per_chunk_ms * 1.25))
    if contender == "native" and k:
        chunks = max(1, int(duration * 1000 / per_chunk_ms / k))
    probes = [new_probe() for _ in range(k)]
    lags: list[float] = []
    consumed = [0]

    async def stream(probe_id: str) -> None:
        async for _ in model.prompt("bench", chunks=chunks, work=steps, probe=probe_id):
            consumed[0] += 1

    async def ticker() -> float:
        start = time.perf_counter()
        while time.perf_counter() - start < duration:
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            lags.append((time.perf_counter() - before - TICK) * 1000)
        return time.perf_counter() - start

    if contender == "process" and k:
        # Start (or wake) k warm workers before the window: a worker's start-up is the cold
        # first chunk (first_chunk family), not loop lag.
        async def one_chunk() -> None:
            async for _ in model.prompt("bench", chunks=1):
                pass

        await asyncio.gather(*(one_chunk() for _ in range(k)))
    ticking = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)
    tasks = [asyncio.ensure_future(stream(pid)) for pid, _ in probes]
    window = await ticking
    # A worker process cannot write the probes of this process: count what arrived instead.
    produced = consumed[0] if contender == "process" else sum(p.produced for _, p in probes)
    for _, probe in probes:
        probe.stop.set()
    for task in tasks:  # an unbounded backlog (0.1) could take minutes to drain
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for pid, _ in probes:
        drop_probe(pid)
    return {
        "p50_ms": percentile(lags, 50),
        "p99_ms": percentile(lags, 99),
        "max_ms": max(lags) if lags else None,
        "ticks": len(lags),
        "chunks_per_s": produced / window if window else None,
        "steps_per_chunk": steps,
        "work_ms": per_chunk_ms,
        "switch_interval_ms": sys.getswitchinterval() * 1000,
    }


def summarize(results: list[JobResult], cfg: Config) -> dict[str, Any]:
    rows = []
    for result in results:
        if result.skipped or not result.samples:
            continue
        rows.append(
            {
                "streams": int(result.job.params["streams"]),
                "contender": result.job.contender,
                "p50_ms": median(result.values("p50_ms")),
                "p99_ms": median(result.values("p99_ms")),
                "max_ms": max(result.values("max_ms"), default=None),
                "ticks": median(result.values("ticks")),
                "chunks_per_s": median(result.values("chunks_per_s")),
            }
        )
    rows.sort(key=lambda r: (r["contender"], r["streams"]))
    switch = next((s["switch_interval_ms"] for r in results for s in r.samples), None)
    work = median([s["work_ms"] for r in results for s in r.samples if "work_ms" in s])
    return {
        "work_ms": work,
        "steps": WORK_STEPS,
        "tick_ms": TICK * 1000,
        "duration_s": cfg.pick(DURATION),
        "switch_interval_ms": switch,
        "rows": rows,
    }


def markdown(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"A coroutine sleeps {summary['tick_ms']:g} ms over and over for "
        f"{summary['duration_s']:g} s; lag is how late it wakes. Each model runs "
        f"{summary['steps']:,} steps of a pure-Python loop (holding the GIL) per chunk, "
        f"{fmt(summary['work_ms'], 2)} ms here. "
        f"GIL switch interval: {fmt(summary['switch_interval_ms'], 0)} ms. "
        "p50/p99 are medians over repeats; max is the worst of all repeats. The native rows "
        "do the same CPU work on the event loop, for reference: the loop is blocked for whole "
        "responses, so only their max means anything. A thread running pure Python "
        "gives up the GIL only when it blocks or when another thread has waited a whole "
        "switch interval, so the loop's wake-ups queue behind every busy worker.",
        "",
        "| contender | CPU-bound streams | p50 ms | p99 ms | max ms | model chunks/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in summary["rows"]:
        lines.append(
            f"| {row['contender']} | {row['streams']} | {fmt(row['p50_ms'], 2)} | "
            f"{fmt(row['p99_ms'], 2)} | {fmt(row['max_ms'], 1)} | {fmt(row['chunks_per_s'], 0)} |"
        )
    return lines
