"""Cancellation: from the consumer stopping to the sync generator's ``finally``, chunks after."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from typing import Any

from .spec import Config, Job, JobResult, Unsupported
from .stats import fmt, median, spread

NAME = "cancellation"
TITLE = "Cancellation"
HEADLINE = "latency_ms"
SCENARIOS = {
    "cancel": "`task.cancel()` on the consuming task",
    "timeout": "`asyncio.wait_for(...)` timeout",
    "drop": "`break`, `del response`, `gc.collect()`",
    "drop_nogc": "`break`, `del response`, no `gc.collect()` (reference counting alone, 0.5 s)",
    "aclose": "`astream_events()` closed early (`aclose()`)",
    "setting": "the adapter's own `LLM_ASYNC_TIMEOUT`",
}
INTERVALS = {"full": (0.01, 0.1), "quick": (0.01,), "tiny": (0.005,)}
REPEATS = {"full": 4, "quick": 3, "tiny": 1}
BEFORE = 3  # chunks consumed before the consumer stops
AFTER = 40  # chunks the model would still produce if nobody closed it
SLACK = 0.020  # the target: closed within one chunk interval plus 20 ms


def plan(cfg: Config) -> list[Job]:
    jobs = []
    repeats = cfg.n_repeats(REPEATS)
    intervals = cfg.pick(INTERVALS)
    for interval in intervals:
        group = f"interval={interval * 1000:g}ms"
        params = {"interval": interval, "before": BEFORE, "chunks": BEFORE + AFTER}
        contenders = ["adapter", "native"] + (["v0.1"] if interval == intervals[0] else [])
        for scenario in ("cancel", "timeout", "drop", "drop_nogc", "aclose"):
            jobs += [
                Job(
                    NAME,
                    group,
                    f"{scenario}@{interval * 1000:g}ms",
                    c,
                    {**params, "scenario": scenario},
                    repeats=repeats,
                )
                for c in contenders
            ]
        limit = _deadline(interval)
        jobs.append(
            Job(
                NAME,
                group,
                f"setting@{interval * 1000:g}ms",
                "adapter",
                {**params, "scenario": "setting"},
                env=(("LLM_ASYNC_TIMEOUT", f"{limit:.4f}"),),
                repeats=repeats,
            )
        )
    return jobs


def _deadline(interval: float) -> float:
    return (BEFORE + 0.5) * interval


def measure(contender: str, params: dict[str, Any]) -> Any:
    from .contenders import model_for

    return _measure(model_for(contender), params)


async def _measure(model: Any, params: dict[str, Any]) -> dict[str, Any]:
    from .models import drop_probe, new_probe

    interval = float(params["interval"])
    probe_id, probe = new_probe()
    try:
        response = model.prompt(
            "bench", chunks=int(params["chunks"]), interval=interval, probe=probe_id
        )
        stop = await _STOPPERS[params["scenario"]](response, int(params["before"]), interval)
        del response
        produced_at_stop = probe.produced if stop["produced"] is None else stop["produced"]
        scenario = params["scenario"]
        wait = 0.5 if scenario == "drop_nogc" else AFTER * interval + 2.0
        gc_ms = None
        if scenario == "drop":
            started = time.perf_counter()
            gc.collect()  # part of the stop: a dropped response may sit in a reference cycle
            gc_ms = (time.perf_counter() - started) * 1000
        deadline = time.perf_counter() + wait
        while not probe.closed.is_set() and time.perf_counter() < deadline:
            await asyncio.sleep(0.001)
        closed = probe.closed.is_set()
        if not closed:
            probe.stop.set()  # end the run by hand so it cannot disturb the next repeat
            gc.collect()
        return {
            "closed": closed,
            "how": probe.how,
            "latency_ms": (probe.closed_at - stop["at"]) * 1000 if closed else None,
            "released_ms": stop["released"] * 1000 if stop["released"] is not None else None,
            "consumed": stop["consumed"],
            "produced_after_stop": probe.produced - produced_at_stop,
            "unconsumed": probe.produced - stop["consumed"],
            "target_ms": (interval + SLACK) * 1000,
            "gc_ms": gc_ms,
        }
    finally:
        drop_probe(probe_id)


async def _by_cancel(response: Any, before: int, interval: float) -> dict[str, Any]:
    reached = asyncio.Event()
    consumed = 0

    async def consume() -> None:
        nonlocal consumed
        async for _ in response:
            consumed += 1
            if consumed == before:
                reached.set()

    task = asyncio.ensure_future(consume())
    await reached.wait()
    at = time.perf_counter()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return {"at": at, "released": time.perf_counter() - at, "consumed": consumed, "produced": None}


async def _by_timeout(
    response: Any, before: int, interval: float, own: bool = False
) -> dict[str, Any]:
    consumed = 0

    async def consume() -> None:
        nonlocal consumed
        async for _ in response:
            consumed += 1

    limit = _deadline(interval)
    start = time.perf_counter()
    try:
        if own:
            await consume()
        else:
            await asyncio.wait_for(consume(), limit)
    except (asyncio.TimeoutError, TimeoutError):  # distinct classes before Python 3.11
        pass
    at = start + limit
    return {"at": at, "released": time.perf_counter() - at, "consumed": consumed, "produced": None}


async def _by_setting(response: Any, before: int, interval: float) -> dict[str, Any]:
    return await _by_timeout(response, before, interval, own=True)


async def _by_drop(response: Any, before: int, interval: float) -> dict[str, Any]:
    consumed = 0
    async for _ in response:
        consumed += 1
        if consumed == before:
            break
    return {"at": time.perf_counter(), "released": None, "consumed": consumed, "produced": None}


async def _by_aclose(response: Any, before: int, interval: float) -> dict[str, Any]:
    if not hasattr(response, "astream_events"):
        raise Unsupported("llm has no AsyncResponse.astream_events() before 0.32")
    consumed = 0
    events = response.astream_events()
    async for event in events:
        if getattr(event, "type", "text") == "text":
            consumed += 1
        if consumed == before:
            break
    at = time.perf_counter()
    await events.aclose()
    return {"at": at, "released": time.perf_counter() - at, "consumed": consumed, "produced": None}


_STOPPERS = {
    "cancel": _by_cancel,
    "timeout": _by_timeout,
    "drop": _by_drop,
    "drop_nogc": _by_drop,
    "aclose": _by_aclose,
    "setting": _by_setting,
}


def summarize(results: list[JobResult], cfg: Config) -> dict[str, Any]:
    rows = []
    for result in results:
        if result.skipped or not result.samples:
            continue
        latencies = result.values("latency_ms")
        rows.append(
            {
                "case": result.job.case,
                "scenario": result.job.params["scenario"],
                "interval_ms": result.job.params["interval"] * 1000,
                "contender": result.job.contender,
                "latency_ms": spread(latencies),
                "closed": f"{sum(1 for s in result.samples if s['closed'])}/{len(result.samples)}",
                "how": sorted({s["how"] for s in result.samples}),
                "released_ms": median(result.values("released_ms")),
                "produced_after_stop": max(result.values("produced_after_stop"), default=None),
                "unconsumed": max(result.values("unconsumed"), default=None),
                "target_ms": result.samples[0]["target_ms"],
            }
        )
    return {"before": BEFORE, "after": AFTER, "rows": rows}


def markdown(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"The model sleeps one interval before each chunk; the consumer takes {summary['before']}"
        f" chunks and stops; {summary['after']} more chunks would follow. Latency: consumer "
        "stopped → the sync generator's `finally` ran (median [max] of repeats). Released: "
        "how long the stopping call itself took. Produced after stop: the most chunks the "
        "generator yielded after the stop in any repeat.",
        "",
        "| how it stops | interval | contender | latency ms | released ms | closed | "
        "produced after stop | target ms |",
        "|---|---:|---|---:|---:|---|---:|---:|",
    ]
    for row in summary["rows"]:
        lat = row["latency_ms"]
        how = ", ".join(row["how"])
        lines.append(
            f"| {row['scenario']} | {row['interval_ms']:g} ms | {row['contender']} | "
            f"{fmt(lat['median'])} [{fmt(lat['max'])}] | {fmt(row['released_ms'], 2)} | "
            f"{row['closed']} ({how}) | {row['produced_after_stop']} | "
            f"{fmt(row['target_ms'], 0)} |"
        )
    lines += ["", "Stops: " + "; ".join(f"**{k}**: {v}" for k, v in SCENARIOS.items()) + "."]
    return lines
