"""Threads and still-running generators left after many streams were cancelled or dropped."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
from typing import Any

from .spec import Config, Job, JobResult

NAME = "threads"
TITLE = "Threads after cancelled streams"
STREAMS = {"full": 1000, "quick": 300, "tiny": 6}
SETTLE = {"full": 15.0, "quick": 10.0, "tiny": 2.0}
CHUNKS = 20
INTERVAL = 0.001
KINDS = ("cancel", "timeout", "drop")
PREFIX = "llm-async:"
WARMUP = 0


def plan(cfg: Config) -> list[Job]:
    params = {
        "streams": cfg.pick(STREAMS),
        "chunks": CHUNKS,
        "interval": INTERVAL,
        "settle": cfg.pick(SETTLE),
    }
    return [
        Job(NAME, "all", "default", c, params, repeats=1) for c in ("adapter", "v0.1", "native")
    ]


def _named() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(PREFIX))


def measure(contender: str, params: dict[str, Any]) -> Any:
    from .contenders import model_for

    return _measure(model_for(contender), params)


async def _stop_one(response: Any, kind: str, interval: float) -> None:
    if kind == "cancel":
        got = asyncio.Event()

        async def consume() -> None:
            async for _ in response:
                got.set()

        task = asyncio.ensure_future(consume())
        await got.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    elif kind == "timeout":

        async def consume_all() -> None:
            async for _ in response:
                pass

        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(consume_all(), 2 * interval)
    else:
        async for _ in response:
            break


async def _measure(model: Any, params: dict[str, Any]) -> dict[str, Any]:
    from .models import drop_probe, new_probe

    streams, interval = int(params["streams"]), float(params["interval"])
    start_total, start_named = threading.active_count(), _named()
    peak_total, peak_named = start_total, start_named
    probes = []
    start = time.perf_counter()
    for i in range(streams):
        probe_id, probe = new_probe()
        probes.append((probe_id, probe))
        response = model.prompt(
            "bench", chunks=int(params["chunks"]), interval=interval, probe=probe_id
        )
        await _stop_one(response, KINDS[i % len(KINDS)], interval)
        del response
        peak_total = max(peak_total, threading.active_count())
        peak_named = max(peak_named, _named())
    loop_s = time.perf_counter() - start
    gc.collect()
    open_at_end = sum(1 for _, p in probes if not p.closed.is_set())
    threads_at_end = threading.active_count()
    settle_start = time.perf_counter()
    while any(
        not p.closed.is_set() for _, p in probes
    ) and time.perf_counter() - settle_start < float(params["settle"]):
        await asyncio.sleep(0.01)
    drain_s = time.perf_counter() - settle_start
    await asyncio.sleep(0.2)  # give finished workers a moment to exit
    result = {
        "streams": streams,
        "seconds": loop_s,
        "threads_before": start_total,
        "threads_peak": peak_total,
        "threads_at_end": threads_at_end,
        "threads_after_settle": threading.active_count(),
        "named_before": start_named,
        "named_peak": peak_named,
        "named_after_settle": _named(),
        "generators_open_at_end": open_at_end,
        "generators_open_after_settle": sum(1 for _, p in probes if not p.closed.is_set()),
        "drain_s": drain_s,
        "chunks_produced": sum(p.produced for _, p in probes),
        "closed_by": sorted({p.how for _, p in probes}),
    }
    for probe_id, probe in probes:
        probe.stop.set()
        drop_probe(probe_id)
    return result


def summarize(results: list[JobResult], cfg: Config) -> dict[str, Any]:
    rows = [
        {"contender": r.job.contender, **r.samples[-1]}
        for r in results
        if not r.skipped and r.samples
    ]
    return {
        "streams": cfg.pick(STREAMS),
        "chunks": CHUNKS,
        "interval_ms": INTERVAL * 1000,
        "kinds": list(KINDS),
        "rows": rows,
    }


def markdown(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"{summary['streams']} streams one after another (model: {summary['chunks']} chunks, "
        f"{summary['interval_ms']:g} ms apart), each stopped after its first chunk by turns: "
        + ", ".join(summary["kinds"])
        + ". Threads: all threads of the process "
        f"(`{PREFIX}*` workers in brackets). Generators open: sync generators whose `finally` "
        "had not run.",
        "",
        "| contender | time s | threads before | peak | right after | after settling | "
        "generators open right after | after settling | settle s | chunks produced |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary["rows"]:
        lines.append(
            f"| {row['contender']} | {row['seconds']:.2f} | {row['threads_before']} "
            f"({row['named_before']}) | {row['threads_peak']} ({row['named_peak']}) | "
            f"{row['threads_at_end']} | {row['threads_after_settle']} "
            f"({row['named_after_settle']}) | {row['generators_open_at_end']} | "
            f"{row['generators_open_after_settle']} | {row['drain_s']:.2f} | "
            f"{row['chunks_produced']} |"
        )
    return lines
