"""What waking a blocked thread, and handing over the GIL, cost on this machine.

Every hand-over between a model's thread and the event loop (a chunk for a waiting consumer,
the GIL given to a starved loop, a frame to a worker process's reader) wakes a thread that was
blocked.  On bare metal that costs microseconds; in a virtual machine whose idle vCPUs halt
(see the ``cpuidle`` facts recorded with the run) it can cost far more.  These figures are the
machine's and the interpreter's, not the adapter's: they say how much of the thread path's
loss on the 1 ms/token shapes a faster machine would give back, and let a run elsewhere be
compared.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from typing import Any

from .spec import Config, Job, JobResult
from .stats import fmt, median, percentile

NAME = "wakeup"
TITLE = "Thread wake-up and GIL hand-over on this machine"
BLOCKED_US = (20, 100, 1000, 5000)  # how long the woken thread has been blocked, at least
HANDOVER_CASES = {
    "sleep0_alone": "`sleep(0)`, no other thread wants the GIL",
    "sleep0_other_waiting": "`sleep(0)`, another thread waits for the GIL",
}
SEND_CASES = {
    "send_peer_blocked": "the peer process is blocked in `recv()` (asleep)",
    "send_peer_polling": "the peer process polls with non-blocking `recv()` (awake)",
}
SEND_WORK = 0.001  # the sender's own work between two frames, as a model's per token
# A process reading frames until EOF; polling or blocking (argv: fd, "poll" | "block").
_PEER = """
import socket, sys
peer = socket.socket(fileno=int(sys.argv[1]))
peer.setblocking(sys.argv[2] != "poll")
while True:
    try:
        if not peer.recv(65536):
            break
    except BlockingIOError:
        pass
"""
ROUNDS = {"full": 400, "quick": 150, "tiny": 3}
REPEATS = {"full": 3, "quick": 2, "tiny": 1}


def plan(cfg: Config) -> list[Job]:
    params = {"rounds": cfg.pick(ROUNDS), "blocked_us": list(BLOCKED_US)}
    return [Job(NAME, "all", "default", "sync", params, repeats=cfg.n_repeats(REPEATS))]


def measure(contender: str, params: dict[str, Any]) -> dict[str, Any]:
    """Wake-up latencies (µs) by blocked time, and the cost of a ``sleep(0)`` hand-over."""
    rounds = int(params["rounds"])
    result: dict[str, Any] = {
        str(blocked): _wakeups(blocked / 1e6, rounds) for blocked in params["blocked_us"]
    }
    result["sleep0_alone"] = _gil_handover(rounds, wake_other=False)
    result["sleep0_other_waiting"] = _gil_handover(rounds, wake_other=True)
    result["send_peer_blocked"] = _send_cost(rounds, peer_polls=False)
    result["send_peer_polling"] = _send_cost(rounds, peer_polls=True)
    return result


def _send_cost(rounds: int, peer_polls: bool) -> dict[str, float]:
    """What sending one 40-byte frame to another process costs the *sender*, after
    :data:`SEND_WORK` of its own work: a process worker's chunk to the parent, and the same
    wake a thread's ``call_soon_threadsafe`` gives a sleeping event loop.  Waking a peer that
    sleeps is paid inside the sender's system call, so it is time away from the model."""
    sender, receiver = socket.socketpair()
    peer = subprocess.Popen(
        [sys.executable, "-c", _PEER, str(receiver.fileno()), "poll" if peer_polls else "block"],
        pass_fds=[receiver.fileno()],
    )
    receiver.close()
    frame = b"x" * 40
    costs: list[float] = []
    try:
        sender.send(frame)  # the peer is up once it has read this (the socket buffers it)
        for _ in range(rounds):
            _spin(SEND_WORK)
            started = time.perf_counter_ns()
            sender.send(frame)
            costs.append((time.perf_counter_ns() - started) / 1000)
    finally:
        sender.close()
        peer.wait(timeout=30)
    return {
        "mean": sum(costs) / len(costs),
        "p50": percentile(costs, 50),
        "p90": percentile(costs, 90),
    }


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


def _gil_handover(rounds: int, wake_other: bool) -> dict[str, float]:
    """What ``time.sleep(0)`` costs a thread that holds the GIL, as the bridge's worker does
    for a starved event loop.  With ``wake_other``, another thread was woken 0.5 ms before
    (a byte on a socket, as ``call_soon_threadsafe`` wakes the loop) and waits for the GIL.
    Returns the time spent in the call and the share of calls during which the other ran."""
    writer, reader = socket.socketpair()
    turns = [0]

    def other() -> None:
        while reader.recv(1) == b"x":  # the GIL is released while it blocks, as in epoll
            turns[0] += 1  # needs the GIL

    thread = threading.Thread(target=other, name="bench-gil-other", daemon=True)
    thread.start()
    lost: list[float] = []
    handed = 0
    try:
        for _ in range(rounds):
            if wake_other:
                writer.send(b"x")
            _spin(0.0005)  # the model's work, GIL held: the other thread now waits for it
            before = turns[0]
            started = time.perf_counter_ns()
            time.sleep(0)
            lost.append((time.perf_counter_ns() - started) / 1000)
            handed += turns[0] != before
            _spin(0.0005)
    finally:
        writer.send(b"q")
        thread.join()
        writer.close()
        reader.close()
    return {
        "p50": percentile(lost, 50),
        "p90": percentile(lost, 90),
        "handed_over": handed / rounds,
    }


def _spin(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def _pause(seconds: float) -> None:
    """Spin for short pauses (a sleep that short oversleeps by more than the pause); sleep
    for long ones."""
    if seconds >= 0.0005:
        time.sleep(seconds)
    else:
        _spin(seconds)


def summarize(results: list[JobResult], cfg: Config) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    handovers: list[dict[str, Any]] = []
    sends: list[dict[str, Any]] = []
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
        for case in HANDOVER_CASES:
            per_repeat = [s[case] for s in result.samples if case in s]
            handovers.append(
                {
                    "case": case,
                    "p50_us": median(r["p50"] for r in per_repeat),
                    "p90_us": median(r["p90"] for r in per_repeat),
                    "handed_over": median(r["handed_over"] for r in per_repeat),
                }
            )
        for case in SEND_CASES:
            per_repeat = [s[case] for s in result.samples if case in s]
            if per_repeat:
                sends.append(
                    {
                        "case": case,
                        "mean_us": median(r["mean"] for r in per_repeat),
                        "p50_us": median(r["p50"] for r in per_repeat),
                        "p90_us": median(r["p90"] for r in per_repeat),
                    }
                )
    return {
        "rounds": cfg.pick(ROUNDS),
        "rows": rows,
        "handovers": handovers,
        "sends": sends,
    }


def markdown(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"Wake-up: one thread sets an event {summary['rounds']} times; the other has been "
        "blocked on it at least the time in the first column, and records when it runs "
        "Python again. A thread blocked past the guest's idle polling (the run's `cpuidle` "
        "facts; `guest_halt_poll_ns=0` means never polling) sleeps on a halted vCPU. "
        "Medians over repeats of each round's p50 and p90.",
        "",
        "| blocked for µs | wake-up p50 µs | p90 µs |",
        "|---:|---:|---:|",
    ]
    for row in summary["rows"]:
        lines.append(f"| {row['blocked_us']} | {fmt(row['p50_us'])} | {fmt(row['p90_us'])} |")
    lines += [
        "",
        "GIL hand-over: a thread running pure Python calls `time.sleep(0)` once a millisecond, "
        "as the bridge's worker does for a starved event loop; the time it spends in the "
        'call is time away from the model\'s work. "Handed over": the share of calls '
        "during which the other thread ran.",
        "",
        "| case | in sleep(0) p50 µs | p90 µs | handed over |",
        "|---|---:|---:|---:|",
    ]
    for row in summary.get("handovers", []):
        lines.append(
            f"| {HANDOVER_CASES[row['case']]} | {fmt(row['p50_us'])} | {fmt(row['p90_us'])} "
            f"| {fmt(100 * row['handed_over'], 0)}% |"
        )
    if summary.get("sends"):
        lines += [
            "",
            "Waking costs the waker: a process sends a 40-byte frame to another after each "
            f"{SEND_WORK * 1000:g} ms of its own work (a process worker's chunk; a thread's "
            "`call_soon_threadsafe` wakes a sleeping loop the same way). The time inside "
            "`send()` is the sender's, away from the model.",
            "",
            "| peer | in send() mean µs | p50 µs | p90 µs |",
            "|---|---:|---:|---:|",
        ]
        for row in summary["sends"]:
            lines.append(
                f"| {SEND_CASES[row['case']]} | {fmt(row['mean_us'])} | {fmt(row['p50_us'])} "
                f"| {fmt(row['p90_us'])} |"
            )
    return lines
