"""A stalled consumer: chunks produced ahead of it and the memory they hold, per buffer size."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from typing import Any

from .spec import Config, Job, JobResult
from .stats import DASH, fmt

NAME = "stall"
TITLE = "Stalled consumer"
HEADLINE = "held_kb"
SIZE = 4096  # characters per chunk
CHUNKS = 2000  # 8 MB if everything were produced
STALL = {"full": 1.0, "quick": 0.5, "tiny": 0.05}
REPEATS = {"full": 2, "quick": 1, "tiny": 1}
BUFFERS = {"full": (1, 8, 32, 256), "quick": (1, 32, 256), "tiny": (2,)}


def plan(cfg: Config) -> list[Job]:
    repeats = cfg.n_repeats(REPEATS)
    params = {"size": SIZE, "chunks": CHUNKS, "stall": cfg.pick(STALL)}
    jobs = [
        Job(NAME, "all", "default", c, params, repeats=repeats)
        for c in ("adapter", "v0.1", "native")
    ]
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
        for b in cfg.pick(BUFFERS)
    ]
    return jobs


def measure(contender: str, params: dict[str, Any]) -> Any:
    from .contenders import effective_setting, model_for

    return _measure(model_for(contender), params, effective_setting(contender, "buffer"))


async def _measure(model: Any, params: dict[str, Any], buffer: int | None) -> dict[str, Any]:
    from .models import drop_probe, new_probe

    probe_id, probe = new_probe()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        response = model.prompt(
            "bench", chunks=int(params["chunks"]), size=int(params["size"]), probe=probe_id
        )
        stream = response.__aiter__()
        await stream.__anext__()
        consumed = 1
        ahead_max = 0
        start = time.perf_counter()
        while time.perf_counter() - start < float(params["stall"]):
            ahead_max = max(ahead_max, probe.produced - consumed)
            await asyncio.sleep(0.005)
        ahead_max = max(ahead_max, probe.produced - consumed)
        held = tracemalloc.get_traced_memory()[0] - base
        probe.stop.set()
        async for _ in stream:
            consumed += 1
        return {
            "ahead_max": ahead_max,
            "buffer": buffer,
            "held_kb": held / 1024,
            "produced": probe.produced,
            "chunk_kb": int(params["size"]) / 1024,
        }
    finally:
        tracemalloc.stop()
        drop_probe(probe_id)


def summarize(results: list[JobResult], cfg: Config) -> dict[str, Any]:
    rows = []
    for result in results:
        if result.skipped or not result.samples:
            continue
        buffers = result.values("buffer")
        rows.append(
            {
                "contender": result.job.contender,
                "case": result.job.case,
                "buffer": buffers[0] if buffers else None,
                "ahead_max": max(result.values("ahead_max")),
                "held_kb": max(result.values("held_kb")),
            }
        )
    return {"size": SIZE, "chunks": CHUNKS, "stall_s": cfg.pick(STALL), "rows": rows}


def markdown(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"The model could produce {summary['chunks']} chunks of {summary['size'] // 1024} KiB "
        f"as fast as it likes; the consumer takes one and stalls for {summary['stall_s']:g} s. "
        "Produced ahead: chunks the sync generator yielded that the consumer has not taken "
        "(most seen, sampled every 5 ms). Held: memory allocated meanwhile (tracemalloc).",
        "",
        "| contender | LLM_ASYNC_BUFFER | produced ahead | held KiB |",
        "|---|---:|---:|---:|",
    ]
    for row in summary["rows"]:
        buffer = DASH if row["buffer"] is None else str(row["buffer"])
        if row["case"] == "default" and row["buffer"] is not None:
            buffer += " (default)"
        lines.append(
            f"| {row['contender']} | {buffer} | {row['ahead_max']} | {fmt(row['held_kb'], 0)} |"
        )
    return lines
