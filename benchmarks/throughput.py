"""Tokens per second of CPU-bound sync models: one holding the GIL, one releasing it.

Two shapes of about a millisecond of work per token: pure-Python steps (the GIL is held, as in
a Python tokenizer or sampler) and sha256 over 1 MiB (hashlib releases the GIL, as native
inference does).  Contenders: llm's sync path, the adapter in thread and in process isolation,
and 0.1.  The process contender also reports its worker's resident memory.
"""

from __future__ import annotations

import time
from typing import Any

from .contenders import PROCESS_ENV
from .spec import Config, Job, JobResult, find
from .stats import TIMES, fmt, median, paired_ratio, spread

NAME = "throughput"
TITLE = "CPU-bound throughput"
HEADLINE = "tokens_per_s"
TOKENS = {"full": 2000, "quick": 600, "tiny": 20}
REPEATS = {"full": 5, "quick": 3, "tiny": 1}
WORK_STEPS = 40_000  # pure-Python loop steps per token: about 1 ms here (loop_lag uses the same)
HASH_BYTES = 1 << 20  # sha256 over 1 MiB per token: about 1 ms here, GIL released
SHAPES = {
    "gil": {"work": WORK_STEPS},
    "nogil": {"hash_bytes": HASH_BYTES},
}
CONTENDERS = ("sync", "adapter", "process", "v0.1")
TARGET_VS_SYNC = 0.97


def plan(cfg: Config) -> list[Job]:
    repeats = cfg.n_repeats(REPEATS)
    jobs = []
    for shape, options in SHAPES.items():
        params = {"chunks": cfg.pick(TOKENS), **options}
        jobs += [
            Job(
                NAME,
                shape,
                shape,
                contender,
                params,
                env=PROCESS_ENV if contender == "process" else (),
                repeats=repeats,
            )
            for contender in CONTENDERS
        ]
    return jobs


def measure(contender: str, params: dict[str, Any]) -> Any:
    from .contenders import model_for

    model = model_for(contender)
    options = {k: v for k, v in params.items() if k in ("chunks", "work", "hash_bytes")}
    if contender == "sync":
        start = time.perf_counter()
        count = sum(1 for _ in model.prompt("bench", **options))
        return _sample(start, count, options["chunks"])
    return _measure_async(contender, model, options)


async def _measure_async(contender: str, model: Any, options: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    count = 0
    async for _ in model.prompt("bench", **options):
        count += 1
    sample = _sample(start, count, options["chunks"])
    if contender == "process":
        from .contenders import worker_rss_mib

        sizes = worker_rss_mib()
        sample["worker_rss_mib"] = max(sizes) if sizes else None
    return sample


def _sample(start: float, count: int, expected: int) -> dict[str, Any]:
    elapsed = time.perf_counter() - start
    if count != expected:
        raise AssertionError(f"expected {expected} tokens, got {count}")
    return {"tokens_per_s": count / elapsed, "seconds": elapsed}


def summarize(results: list[JobResult], cfg: Config) -> dict[str, Any]:
    rows = []
    for shape in SHAPES:
        sync = find(results, shape, "sync")
        sync_values = sync.values("tokens_per_s") if sync else []
        for contender in CONTENDERS:
            result = find(results, shape, contender)
            if result is None or not result.samples:
                continue
            mine = result.values("tokens_per_s")
            rows.append(
                {
                    "shape": shape,
                    "contender": contender,
                    "tokens_per_s": spread(mine),
                    "vs_sync": paired_ratio(mine, sync_values),
                    "worker_rss_mib": median(result.values("worker_rss_mib")),
                }
            )
    return {"tokens": cfg.pick(TOKENS), "steps": WORK_STEPS, "hash_bytes": HASH_BYTES, "rows": rows}


def markdown(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"{summary['tokens']:,} tokens per run. `gil`: {summary['steps']:,} pure-Python steps "
        f"per token (GIL held); `nogil`: sha256 over {summary['hash_bytes'] // 1024} KiB per "
        "token (GIL released). Median tokens/s of the repeats; vs sync is the median of the "
        "per-round ratios to llm's sync path.",
        "",
        "| shape | contender | tokens/s | vs sync | worker RSS MiB |",
        "|---|---|---:|---:|---:|",
    ]
    for row in summary["rows"]:
        lines.append(
            f"| {row['shape']} | {row['contender']} | {fmt(row['tokens_per_s']['median'])} | "
            f"{fmt(row['vs_sync'], 2, TIMES)} | {fmt(row['worker_rss_mib'])} |"
        )
    return lines
