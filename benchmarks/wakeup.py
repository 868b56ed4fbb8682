"""What waking a blocked thread costs on this machine, by how long it was blocked.

Every hand-over between a model's thread and the event loop (a chunk for a waiting consumer,
the GIL given to a starved loop, a frame to a worker process's reader) wakes a thread that was
blocked.  On bare metal that costs microseconds; in a virtual machine whose idle vCPUs halt
(see the ``cpuidle`` facts recorded with the run) it can cost a hundred times more once the
sleeper has been blocked long enough to halt.  This figure is the machine's, not the adapter's:
it says how much of the thread path's loss on the 1 ms/token shapes a faster wake-up would
give back, and lets a run on another machine be compared.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .spec import Config, Job, JobResult
from .stats import fmt, median, percentile

NAME = "wakeup"
TITLE = "Thread wake-up on this machine"
BLOCKED_US = (20, 100, 1000, 5000)  # how long the woken thread has been blocked
ROUNDS = {"full": 400, "quick": 150, "tiny": 3}
REPEATS = {"full": 3, "quick": 2, "tiny": 1}


def plan(cfg: Config) -> list[Job]:
    params = {"rounds": cfg.pick(ROUNDS), "blocked_us": list(BLOCKED_US)}
    return [Job(NAME, "all", "default", "sync", params, repeats=cfg.n_repeats(REPEATS))]


def measure(contender: str, params: dict[str, Any]) -> dict[str, Any]:
    """Wake-up latencies in µs (p50, p90) for each blocked time; no adapter is involved."""
    rounds = int(params["rounds"])
    return {str(blocked): _wakeups(blocked / 1e6, rounds) for blocked in params["blocked_us"]}


def _wakeups(blocked_s: float, rounds: int) -> dict[str, float]:
    """One thread sets an event after the other has waited ``blocked_s`` on it; the latency
    is from ``set()`` to the waiter running Python again (futex wake-up, scheduling, GIL)."""
    go, back = threading.Event(), threading.Event()
    set_at = [0] * rounds
    woke_at = [0] * rounds

    def waiter() -> None:
        for i in range(rounds):
            go.wait()
            woke_at[i] = time.perf_counter_ns()
            go.clear()
            back.set()

    thread = threading.Thread(target=waiter, name="bench-wakeup", daemon=True)
    thread.start()
    for i in range(rounds):
        _pause(blocked_s)  # the waiter is blocked on ``go`` all this time
        set_at[i] = time.perf_counter_ns()
        go.set()
        back.wait()
        back.clear()
    thread.join()
    latencies = [(woke - set_) / 1000 for woke, set_ in zip(woke_at, set_at, strict=True)]
    return {"p50": percentile(latencies, 50), "p90": percentile(latencies, 90)}


def _pause(seconds: float) -> None:
    """Spin, GIL released now and then, for short pauses (a sleep that short oversleeps by
    more than the pause); sleep for long ones."""
    if seconds >= 0.0005:
        time.sleep(seconds)
        return
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def summarize(results: list[JobResult], cfg: Config) -> dict[str, Any]:
    rows = []
    for result in results:
        if result.skipped or not result.samples:
            continue
        for blocked in BLOCKED_US:
            per_repeat = [s[str(blocked)] for s in result.samples if str(blocked) in s]
            rows.append(
                {
                    "blocked_us": blocked,
                    "p50_us": median(r["p50"] for r in per_repeat),
                    "p90_us": median(r["p90"] for r in per_repeat),
                }
            )
    return {"rounds": cfg.pick(ROUNDS), "rows": rows}


def markdown(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"One thread sets an event {summary['rounds']} times; the other has been blocked on "
        "it for the time in the first column, and records when it runs Python again. "
        "Medians over repeats of each round's p50 and p90. A thread blocked past the "
        "guest's idle polling (the run's `cpuidle` facts) sleeps on a halted vCPU, and its "
        "wake-up is what every blocking hand-over between a model's thread and the event loop "
        "pays.",
        "",
        "| blocked for µs | wake-up p50 µs | p90 µs |",
        "|---:|---:|---:|",
    ]
    for row in summary["rows"]:
        lines.append(f"| {row['blocked_us']} | {fmt(row['p50_us'])} | {fmt(row['p90_us'])} |")
    return lines
