"""The performance targets: each one met, not met, or not measured, with the number behind it."""

from __future__ import annotations

import math
from typing import Any

from .stats import DASH, TIMES, fmt, interval


def _verdict(ok: bool | None) -> str:
    return {True: "met", False: "not met", None: "not measured"}[ok]


def _target(name: str, goal: str, ok: bool | None, value: str, detail: str) -> dict[str, Any]:
    return {
        "target": name,
        "goal": goal,
        "verdict": _verdict(ok),
        "met": ok,
        "value": value,
        "detail": detail,
    }


def per_chunk(summary: dict[str, Any] | None) -> dict[str, Any]:
    goal = f"adapter per-chunk cost ≤ 1.5 {TIMES} native async at the default buffer"
    rows = {r["contender"]: r for r in (summary or {}).get("default", [])}
    value = rows.get("adapter", {}).get("vs_native", math.nan)
    if math.isnan(value):
        return _target("per-chunk cost", goal, None, DASH, "adapter or native not measured")
    detail = (
        f"adapter {fmt(rows['adapter']['median'])} µs vs native "
        f"{fmt(rows['native']['median'])} µs per chunk"
    )
    return _target("per-chunk cost", goal, value <= 1.5, f"{value:.2f}{TIMES}", detail)


def cancellation(summary: dict[str, Any] | None) -> dict[str, Any]:
    goal = "sync generator closed within one chunk interval + 20 ms of the stop (every repeat)"
    rows = [r for r in (summary or {}).get("rows", []) if r["contender"] == "adapter"]
    if not rows:
        return _target("cancellation", goal, None, DASH, "adapter not measured")
    worst = None
    failures = []
    for row in rows:
        latency = row["latency_ms"]["max"]
        closed_all = row["closed"].split("/")[0] == row["closed"].split("/")[1]
        if not closed_all or math.isnan(latency) or latency > row["target_ms"]:
            failures.append(
                f"{row['case']}: {fmt(latency)} ms > {row['target_ms']:g} ms"
                if closed_all
                else f"{row['case']}: not closed ({row['closed']})"
            )
        margin = latency / row["target_ms"] if not math.isnan(latency) else math.inf
        if worst is None or margin > worst[0]:
            worst = (margin, row)
    assert worst is not None
    row = worst[1]
    value = (
        f"worst {fmt(row['latency_ms']['max'])} ms ({row['case']}, target {row['target_ms']:g} ms)"
    )
    detail = "; ".join(failures) if failures else "all scenarios within target"
    return _target("cancellation", goal, not failures, value, detail)


def concurrency(summary: dict[str, Any] | None) -> dict[str, Any]:
    goal = f"32 concurrent 0.2 s IO-bound prompts, concurrency raised: wall ≤ 1.5 {TIMES} ideal"
    row = next(
        (r for r in (summary or {}).get("rows", []) if r["series"] == "raised" and r["n"] == 32),
        None,
    )
    if row is None:
        return _target("concurrency", goal, None, DASH, "n=32, concurrency raised: not measured")
    value = row["vs_ideal"]
    return _target(
        "concurrency",
        goal,
        value <= 1.5,
        f"{value:.2f}{TIMES}",
        f"{fmt(row['wall_s']['median'], 3)} s for 32 prompts (ideal {row['ideal_s']:g} s)",
    )


def loop_lag(summary: dict[str, Any] | None, limit_ms: float = 20.0) -> dict[str, Any]:
    goal = f"event-loop lag p99 < {limit_ms:g} ms while CPU-bound sync models run"
    rows = [
        r
        for r in (summary or {}).get("rows", [])
        if r["contender"] == "adapter" and r["streams"] > 0
    ]
    if not rows:
        return _target("loop lag", goal, None, DASH, "adapter not measured")
    worst = max(rows, key=lambda r: r["p99_ms"])
    detail = ", ".join(f"{r['streams']} stream(s): p99 {fmt(r['p99_ms'], 2)} ms" for r in rows)
    return _target(
        "loop lag",
        goal,
        all(r["p99_ms"] < limit_ms for r in rows),
        f"worst p99 {fmt(worst['p99_ms'], 2)} ms ({worst['streams']} streams)",
        detail,
    )


def first_chunk(
    summary: dict[str, Any] | None, head_to_head: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Judged on the head-to-head turns in one process where they ran, else on the medians
    of separate worker processes (whose regimes move a median more than the adapter does)."""
    goal = "adapter time to first chunk no slower than the 0.1 release"
    rows = {r["contender"]: r for r in (summary or {}).get("rows", [])}
    separate = ""
    if "adapter" in rows and "v0.1" in rows:
        mine, theirs = rows["adapter"]["ttfc_us"]["median"], rows["v0.1"]["ttfc_us"]["median"]
        separate = f"{fmt(mine, 0)} vs {fmt(theirs, 0)} µs"
    turns = _head_to_head_rows(head_to_head, "first chunk")
    if "adapter" in turns and not math.isnan(turns["adapter"].get("vs_v01", math.nan)):
        adapter = turns["adapter"]
        ratio_ = adapter["vs_v01"]
        detail = (
            f"in one process, taking turns prompt by prompt: adapter {fmt(adapter['value'], 0)} "
            f"µs, 0.1 {fmt(turns['v0.1']['value'], 0)} µs (medians); per repeat the adapter "
            f"took {fmt(ratio_, 3, TIMES)} 0.1's time{interval(adapter.get('vs_v01_interval'))}"
        )
        again = turns.get("adapter again")
        if again is not None:
            detail += (
                f"; noise floor: a second adapter twin took {fmt(again['vs_adapter'], 3, TIMES)} "
                f"the first's time{interval(again.get('vs_adapter_interval'))}"
            )
        if separate:
            detail += f"; in separate worker processes (first-chunk family): {separate}"
        return _target(
            "first chunk", goal, ratio_ <= 1.0, f"{fmt(ratio_, 3, TIMES)} 0.1's time", detail
        )
    if not separate:
        return _target("first chunk", goal, None, DASH, "adapter or 0.1 not measured")
    detail = "median time from model.prompt() to the first chunk, in separate worker processes"
    paired = rows["adapter"].get("vs_v01", math.nan)
    if not math.isnan(paired):
        detail += (
            f"; per repeat, the adapter took {fmt(paired, 3, TIMES)} 0.1's time"
            f"{interval(rows['adapter'].get('vs_v01_interval'))}"
        )
    quartiles = [rows[c].get("ttfc_quartiles_us") for c in ("adapter", "v0.1")]
    if all(quartiles):
        (a_low, a_high), (v_low, v_high) = quartiles
        detail += (
            f"; repeats' quartiles {fmt(a_low, 0)}{DASH}{fmt(a_high, 0)} µs against "
            f"{fmt(v_low, 0)}{DASH}{fmt(v_high, 0)}"
        )
    return _target("first chunk", goal, mine <= theirs, separate, detail)


def _head_to_head_rows(summary: dict[str, Any] | None, case: str) -> dict[str, dict[str, Any]]:
    """The rows of one head-to-head case, by contender (empty when it did not run)."""
    for entry in (summary or {}).get("cases", []):
        if entry["case"] == case:
            return {row["contender"]: row for row in entry["rows"]}
    return {}


def loop_lag_light(summary: dict[str, Any] | None, limit_ms: float = 5.0) -> dict[str, Any]:
    goal = f"event-loop lag p99 ≤ {limit_ms:g} ms with one and with two CPU-bound models"
    rows = [
        r
        for r in (summary or {}).get("rows", [])
        if r["contender"] == "adapter" and r["streams"] in (1, 2)
    ]
    if not rows:
        return _target("loop lag, 1-2 models", goal, None, DASH, "adapter not measured")
    worst = max(rows, key=lambda r: r["p99_ms"])
    detail = ", ".join(f"{r['streams']} stream(s): p99 {fmt(r['p99_ms'], 2)} ms" for r in rows)
    return _target(
        "loop lag, 1-2 models",
        goal,
        all(r["p99_ms"] <= limit_ms for r in rows),
        f"worst p99 {fmt(worst['p99_ms'], 2)} ms ({worst['streams']} streams)",
        detail,
    )


def throughput(
    name: str, summary: dict[str, Any] | None, key: str, minimum: float = 0.97
) -> dict[str, Any]:
    """Adapter tokens/s at least ``minimum`` times the sync path and at least 0.1, per case.

    Where the family measured the model's own speed (the shapes), the verdict uses the
    speed-adjusted ratio (shapes.py): the machine's drift between rounds moves the raw ratio
    by ±10% on a shared host, and the adjusted one hardly at all. It leaves out any change in
    the speed of the model's own work, also one the path causes; the detail gives the raw
    ratio and that factor beside it, so a reader sees both.
    """
    goal = f"adapter tokens/s ≥ {minimum:g} {TIMES} llm's sync path and ≥ 0.1, per {key}"
    rows = [r for r in (summary or {}).get("rows", []) if r["contender"] == "adapter"]
    if not rows:
        return _target(name, goal, None, DASH, "adapter not measured")
    failures = []
    parts = []
    judged: list[tuple[float, float, dict[str, Any], bool]] = []
    for row in rows:
        adjusted = row.get("vs_sync_adjusted", math.nan)
        use_adjusted = not math.isnan(adjusted)
        vs_sync = adjusted if use_adjusted else row["vs_sync"]
        vs_v01 = row.get("vs_v01_adjusted" if use_adjusted else "vs_v01", math.nan)
        raw = (
            f"{fmt(row['vs_sync'], 3, TIMES)} sync{interval(row.get('vs_sync_interval'))}, "
            f"{fmt(row.get('vs_v01', math.nan), 3, TIMES)} 0.1"
            f"{interval(row.get('vs_v01_interval'))}"
        )
        if use_adjusted:
            parts.append(
                f"{row[key]}: speed-adjusted {fmt(adjusted, 3, TIMES)} sync"
                f"{interval(row.get('vs_sync_adjusted_interval'), 3)}, {fmt(vs_v01, 3, TIMES)} "
                f"0.1 (raw {raw}; the model's work ran "
                f"{fmt(row.get('work_speed_vs_sync', math.nan), 3, TIMES)} as fast as on sync)"
            )
        else:
            parts.append(f"{row[key]}: {raw}")
        if math.isnan(vs_sync) or vs_sync < minimum:
            failures.append(row[key])
        if not math.isnan(vs_v01) and vs_v01 < 1.0:
            failures.append(f"{row[key]} (below 0.1)")
        judged.append((-1.0 if math.isnan(vs_sync) else vs_sync, vs_sync, row, use_adjusted))
    _, worst_value, worst, adjusted_worst = min(judged, key=lambda item: item[0])
    how = ", speed-adjusted" if adjusted_worst else ""
    value = f"worst {fmt(worst_value, 3, TIMES)} sync{how} ({worst[key]})"
    return _target(name, goal, not failures, value, "; ".join(parts))


def real_models(
    summary: dict[str, Any] | None, head_to_head: dict[str, Any] | None = None
) -> dict[str, Any]:
    """:func:`throughput` of the real models, judged on the head-to-head turns in one process
    (speed-adjusted) for each model that ran there, else on the separate worker processes.

    Two instances of one llama.cpp model in one process run their own work up to 5% apart
    (CPU time per token), and in separate processes identical contenders differ by up to
    3%: the raw ratio of the separate processes cannot judge 0.97 or 1.0.  Each model's
    separate-process ratios are added to the detail.
    """
    separate = {
        r["model"]: r for r in (summary or {}).get("rows", []) if r["contender"] == "adapter"
    }
    turns = {
        entry["case"]: row
        for entry in (head_to_head or {}).get("cases", [])
        if entry["case"] != "first chunk"
        for row in entry["rows"]
        if row["contender"] == "adapter"
    }
    rows = [
        {**turns[name], "model": f"{name} (one process)"} if name in turns else separate[name]
        for name in dict.fromkeys([*separate, *turns])
    ]
    verdict = throughput("real models", {"rows": rows}, "model")
    if turns and separate:
        verdict["detail"] += "; in separate worker processes: " + ", ".join(
            f"{name} {fmt(row['vs_sync'], 3, TIMES)} sync{interval(row.get('vs_sync_interval'))}"
            f", {fmt(row.get('vs_v01', math.nan), 3, TIMES)} 0.1"
            f"{interval(row.get('vs_v01_interval'))}"
            for name, row in separate.items()
        )
    return verdict


def produced_ahead(summary: dict[str, Any] | None) -> dict[str, Any]:
    goal = "chunks produced ahead of a stalled consumer never above LLM_ASYNC_BUFFER"
    rows = [
        r
        for r in (summary or {}).get("rows", [])
        if r["contender"] == "adapter" and r["buffer"] is not None
    ]
    if not rows:
        return _target("produced ahead", goal, None, DASH, "adapter not measured")
    over = [r for r in rows if r["ahead_max"] > r["buffer"]]
    detail = ", ".join(f"buffer {r['buffer']}: {r['ahead_max']}" for r in rows)
    worst = max(rows, key=lambda r: r["ahead_max"] - r["buffer"])
    return _target(
        "produced ahead",
        goal,
        not over,
        f"worst {worst['ahead_max']} at buffer {worst['buffer']}",
        detail,
    )


def process_throughput(summary: dict[str, Any] | None, floor: float = 0.97) -> dict[str, Any]:
    goal = f"process isolation ≥ {floor:g}{TIMES} llm's sync throughput, GIL held and released"
    rows = [r for r in (summary or {}).get("rows", []) if r["contender"] == "process"]
    if not rows or any(math.isnan(r["vs_sync"]) for r in rows):
        return _target("process throughput", goal, None, DASH, "process or sync not measured")
    detail = ", ".join(f"{r['shape']}: {r['vs_sync']:.3f}{TIMES}" for r in rows)
    worst = min(rows, key=lambda r: r["vs_sync"])
    return _target(
        "process throughput",
        goal,
        all(r["vs_sync"] >= floor for r in rows),
        f"worst {worst['vs_sync']:.3f}{TIMES} ({worst['shape']})",
        detail,
    )


def process_loop_lag(summary: dict[str, Any] | None, limit_ms: float = 10.0) -> dict[str, Any]:
    goal = f"event-loop lag p99 ≤ {limit_ms:g} ms with 4 CPU-bound models in process isolation"
    rows = [
        r
        for r in (summary or {}).get("rows", [])
        if r["contender"] == "process" and r["streams"] > 0
    ]
    four = next((r for r in rows if r["streams"] == 4), None)
    if four is None:
        return _target("process loop lag", goal, None, DASH, "process with 4 streams not measured")
    detail = ", ".join(f"{r['streams']} stream(s): p99 {fmt(r['p99_ms'], 2)} ms" for r in rows)
    return _target(
        "process loop lag", goal, four["p99_ms"] <= limit_ms, f"{fmt(four['p99_ms'], 2)} ms", detail
    )


def process_first_chunk(summary: dict[str, Any] | None, limit_us: float = 2000.0) -> dict[str, Any]:
    goal = f"process isolation: warm first chunk ≤ {limit_us / 1000:g} ms"
    row = next((r for r in (summary or {}).get("rows", []) if r["contender"] == "process"), None)
    if row is None or math.isnan(row["ttfc_us"]["median"]):
        return _target("process first chunk", goal, None, DASH, "process not measured")
    warm = row["ttfc_us"]["median"]
    detail = f"warm {fmt(warm)} µs, cold {fmt(row.get('cold_us', math.nan))} µs (worker start)"
    return _target("process first chunk", goal, warm <= limit_us, f"{fmt(warm)} µs", detail)


def evaluate(families: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every target, judged from the families' summaries (missing families: not measured)."""

    def summary(name: str) -> dict[str, Any] | None:
        return families.get(name, {}).get("summary")

    return [
        per_chunk(summary("per_chunk")),
        first_chunk(summary("first_chunk"), summary("head_to_head")),
        cancellation(summary("cancellation")),
        concurrency(summary("concurrency")),
        loop_lag(summary("loop_lag")),
        loop_lag_light(summary("loop_lag")),
        produced_ahead(summary("stall")),
        throughput("1 ms/token shapes", summary("shapes"), "shape"),
        real_models(summary("real"), summary("head_to_head")),
        process_throughput(summary("shapes")),
        process_loop_lag(summary("loop_lag")),
        process_first_chunk(summary("first_chunk")),
    ]
