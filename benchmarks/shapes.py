"""Model shapes: tokens per second of a model doing about 1 ms of work per token, sync vs adapted.

Two shapes stand for the models the thread path exists for:

- ``gil``: pure-Python work that holds the GIL (a Python tokenizer or sampler, a pure-Python
  model such as llm-markov at scale);
- ``nogil``: native work that releases the GIL (``hashlib`` over 1 MiB per token, as torch or
  llama.cpp release it while they compute).

Each reply is ``TOKENS`` tokens; every contender does exactly the same work per token (a fixed
number of steps, not a calibrated time, so the 0.1 environment does the same work too).
"""

from __future__ import annotations

import math
import os
import resource
import tempfile
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
    spread,
)

NAME = "shapes"
TITLE = "Model shapes (about 1 ms of work per token)"
HEADLINE = "tokens_per_s"
CONTENDERS = ("sync", "adapter", "process", "v0.1")
TOKENS = {"full": 500, "quick": 200, "tiny": 5}
REPEATS = {"full": 25, "quick": 5, "tiny": 1}
SHAPES: dict[str, dict[str, Any]] = {
    "gil": {
        "options": {"work": 40_000},
        "note": "40,000 steps of a pure-Python loop per token (holds the GIL)",
    },
    "nogil": {
        "options": {"hash_kib": 1024},
        "note": "sha256 over 1 MiB per token (hashlib releases the GIL)",
    },
}


def plan(cfg: Config) -> list[Job]:
    repeats = cfg.n_repeats(REPEATS)
    jobs = []
    for shape, spec in SHAPES.items():
        params = {"chunks": cfg.pick(TOKENS), **spec["options"]}
        jobs += [
            Job(
                NAME,
                shape,
                shape,
                c,
                params,
                env=PROCESS_ENV if c == "process" else (),
                repeats=repeats,
            )
            for c in CONTENDERS
        ]
    return jobs


def measure(contender: str, params: dict[str, Any]) -> Any:
    from .contenders import model_for

    model = model_for(contender)
    # The model appends its time outside its work to this file, from whichever process runs
    # it (a worker process for the process contender).
    log = _outside_log()
    options = {k: v for k, v in params.items() if k != "chunks"}
    options["outside_log"] = log
    chunks = int(params["chunks"])
    if contender == "sync":
        cpu = cpu_now()
        start = time.perf_counter()
        first = None
        count = 0
        for _ in model.prompt("bench", chunks=chunks, **options):
            if first is None:
                first = time.perf_counter() - start
            count += 1
        sample = _sample(count, time.perf_counter() - start, first, chunks, cpu)
        sample.update(read_model_log(log, sample))
        return sample
    return _measure_async(model, chunks, options, log, contender == "process")


def _outside_log() -> str:
    """A fresh file in this worker's temporary llm user dir, which the runner removes with
    the run however a measurement ends."""
    handle, path = tempfile.mkstemp(
        prefix="bench-outside-", suffix=".txt", dir=os.environ.get("LLM_USER_PATH")
    )
    os.close(handle)
    return path


def read_model_log(log: str, sample: dict[str, Any]) -> dict[str, Any]:
    """The model's own figures (see models._plain), and the file removed.

    ``outside_us_per_token``: the mean time per token its thread spent outside its work,
    what the path costs the model however fast the machine runs. ``work_cpu_us_per_token``:
    the CPU time of the work itself, i.e. how fast the machine ran the model in this reply.
    ``work_share``: that CPU time over the wall time per token the consumer saw. A machine
    that runs everything 10% slower for a second moves tokens/s by 10% and the share not at
    all, so the share of two contenders compares their paths without the machine's drift.
    """
    with open(log, encoding="utf-8") as lines:
        written = lines.read().split()
    os.unlink(log)
    if len(written) < 2:
        return {"outside_us_per_token": None, "work_cpu_us_per_token": None, "work_share": None}
    outside, work_cpu = float(written[-2]), float(written[-1])
    return {
        "outside_us_per_token": outside,
        "work_cpu_us_per_token": work_cpu,
        "work_share": work_cpu / (sample["ms_per_token"] * 1000),
    }


async def _measure_async(
    model: Any, chunks: int, options: dict[str, Any], log: str, in_worker: bool = False
) -> dict[str, Any]:
    """``in_worker``: the process contender; its CPU is the worker's, so CPU and switches
    here count only this process's side, and the worker's resident memory is recorded."""
    cpu = cpu_now()
    start = time.perf_counter()
    first = None
    count = 0
    async for _ in model.prompt("bench", chunks=chunks, **options):
        if first is None:
            first = time.perf_counter() - start
        count += 1
    sample = _sample(count, time.perf_counter() - start, first, chunks, cpu)
    sample.update(read_model_log(log, sample))
    if in_worker:
        from .contenders import worker_rss_mib

        sizes = worker_rss_mib()
        sample["worker_rss_mib"] = max(sizes) if sizes else None
    return sample


def cpu_now() -> tuple[float, int]:
    """CPU time of the whole process (every thread) and its voluntary context switches."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.process_time(), usage.ru_nvcsw


def _sample(
    count: int, seconds: float, first: float | None, expected: int, cpu_start: tuple[float, int]
) -> dict[str, Any]:
    if count != expected:
        raise AssertionError(f"expected {expected} tokens, got {count}")
    cpu, switches = cpu_now()
    return {
        # Per token, CPU time and the times a thread of this process blocked (GIL, lock or
        # select hand-overs): unlike tokens/s they hardly depend on what else the machine
        # runs, so they show the adapter's cost when the machine is busy.
        "cpu_ms_per_token": (cpu - cpu_start[0]) / count * 1000,
        "switches_per_token": (switches - cpu_start[1]) / count,
        "tokens": count,
        "seconds": seconds,
        "tokens_per_s": count / seconds,
        "ms_per_token": seconds / count * 1000,
        "first_token_ms": first * 1000 if first is not None else None,
    }


def summarize(results: list[JobResult], cfg: Config) -> dict[str, Any]:
    rows = []
    for shape in SHAPES:
        sync = find(results, shape, "sync")
        v01 = find(results, shape, "v0.1")
        base = sync.values("tokens_per_s") if sync else []
        base_v01 = v01.values("tokens_per_s") if v01 else []
        share = sync.values("work_share") if sync else []
        share_v01 = v01.values("work_share") if v01 else []
        speed = sync.values("work_cpu_us_per_token") if sync else []
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
                    "ms_per_token": spread(result.values("ms_per_token"))["median"],
                    "cpu_ms_per_token": spread(result.values("cpu_ms_per_token"))["median"],
                    "switches_per_token": spread(result.values("switches_per_token"))["median"],
                    "outside_us_per_token": spread(result.values("outside_us_per_token"))["median"],
                    "cpu_vs_sync": paired_ratio(
                        sync.values("cpu_ms_per_token") if sync else [],
                        result.values("cpu_ms_per_token"),
                    ),
                    "vs_sync": paired_ratio(mine, base),
                    "vs_sync_interval": paired_interval(mine, base),
                    "vs_v01": paired_ratio(mine, base_v01),
                    "vs_v01_interval": paired_interval(mine, base_v01),
                    "work_cpu_us_per_token": median(result.values("work_cpu_us_per_token")),
                    "work_share": median(result.values("work_share")),
                    # sync's work CPU over this one's: above 1, the machine ran the model
                    # faster in this contender's rounds. vs_sync = adjusted x this, per round.
                    "work_speed_vs_sync": paired_ratio(
                        speed, result.values("work_cpu_us_per_token")
                    ),
                    "work_speed_interval": paired_interval(
                        speed, result.values("work_cpu_us_per_token")
                    ),
                    "vs_sync_adjusted": paired_ratio(result.values("work_share"), share),
                    "vs_sync_adjusted_interval": paired_interval(
                        result.values("work_share"), share
                    ),
                    "vs_v01_adjusted": paired_ratio(result.values("work_share"), share_v01),
                    "worker_rss_mib": spread(result.values("worker_rss_mib"))["median"],
                }
            )
    return {
        "tokens": cfg.pick(TOKENS),
        "rows": rows,
        "notes": {shape: spec["note"] for shape, spec in SHAPES.items()},
    }


def markdown(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"Tokens per second over {summary['tokens']} tokens per reply (min{DASH}max of repeats "
        'in brackets); "vs sync" and "vs 0.1" are medians of per-round ratios (contenders '
        "alternate within each round), with a 95% bootstrap interval of the first in "
        "brackets. CPU ms/token is the process's CPU time (all threads) "
        'per token; "CPU: sync / this" above 1 means this contender spends less CPU per token '
        "than llm's sync path (a figure that holds on a busy machine, where tokens/s does not); "
        "blocking switches are the voluntary context switches of the process per token; "
        '"outside the model" is the mean time per token the model\'s thread spent between the '
        "end of one token's work and the start of the next (llm's per-chunk work on the sync "
        "path; the hand-over and any wait for the GIL through an adapter; sending the chunk "
        "and any wait for credit in a worker process), a cost that does not scale with the "
        "machine's speed.",
        "",
        "| shape | contender | tokens/s | ms/token | vs sync | vs 0.1 | CPU ms/token | "
        "CPU: sync / this | blocking switches/token | outside the model µs/token |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary["rows"]:
        tps = row["tokens_per_s"]
        lines.append(
            f"| {row['shape']} | {row['contender']} | "
            f"{fmt(tps['median'])} [{fmt(tps['min'])}{DASH}{fmt(tps['max'])}] | "
            f"{fmt(row['ms_per_token'], 3)} | {fmt(row['vs_sync'], 3, TIMES)}"
            f"{interval(row.get('vs_sync_interval'))} | "
            f"{fmt(row['vs_v01'], 3, TIMES)} | {fmt(row['cpu_ms_per_token'], 3)} | "
            f"{fmt(row['cpu_vs_sync'], 3, TIMES)} | {fmt(row['switches_per_token'], 2)} | "
            f"{fmt(row.get('outside_us_per_token'), 1)} |"
        )
    lines += [""] + [f"- {shape}: {note}." for shape, note in summary["notes"].items()]
    lines += _adjusted_markdown(summary["rows"])
    rss = [r for r in summary["rows"] if r["contender"] == "process"]
    if rss:
        lines.append(
            "- process: the model runs in a warm worker (`LLM_ASYNC_ISOLATION=process`); CPU "
            "and switches above are this process's side only, time outside the model is the "
            "worker's; worker RSS "
            + ", ".join(f"{r['shape']} {fmt(r.get('worker_rss_mib'))} MiB" for r in rss)
            + "."
        )
    return lines


def _adjusted_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The same rounds with the machine's drift taken out, and the factor taken out."""
    rows = [r for r in rows if not math.isnan(r.get("vs_sync_adjusted", math.nan))]
    if not rows:
        return []
    lines = [
        "",
        "Speed-adjusted: on a shared machine the speed at which the same work runs moves by "
        "about a tenth within a second, and tokens/s with it. The model measures that speed "
        'itself: the CPU time of its own work per token. "Share in the model\'s work" is that '
        "CPU time over the wall time per token the consumer saw; the path's costs (llm's "
        'per-chunk work, hand-overs, waits for the GIL) are the rest. "vs sync, '
        'speed-adjusted" is the median per-round ratio of the shares. Per round it times '
        '"model\'s work speed vs sync" equals the "vs sync" above; that factor is where the '
        "machine's drift goes, and it would also hold any slowing of the model's own work "
        "by the path (a cache disturbed by another thread), which it shows as below 1.",
        "",
        "| shape | contender | vs sync | model's work speed vs sync | vs sync, speed-adjusted "
        "| vs 0.1, speed-adjusted | model's work CPU µs/token | share in the model's work |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['shape']} | {row['contender']} | {fmt(row['vs_sync'], 3, TIMES)} | "
            f"{fmt(row['work_speed_vs_sync'], 3, TIMES)}"
            f"{interval(row.get('work_speed_interval'))} | "
            f"{fmt(row['vs_sync_adjusted'], 3, TIMES)}"
            f"{interval(row.get('vs_sync_adjusted_interval'))} | "
            f"{fmt(row['vs_v01_adjusted'], 3, TIMES)} | "
            f"{fmt(row['work_cpu_us_per_token'], 1)} | {fmt(row['work_share'], 3)} |"
        )
    return lines
