"""PNG plots: per-chunk cost vs buffer, concurrency scaling, cancellation latency, loop lag."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .stats import TIMES

FLOOR_MS = 0.01  # lags are drawn on a log scale: clip at 10 µs
# One colour per contender of benchmarks.contenders.ALL_CONTENDERS (a test keeps them in step).
COLOURS = {
    "adapter": "tab:blue",
    "process": "tab:purple",
    "native": "tab:green",
    "sync": "tab:gray",
    "v0.1": "tab:red",
}


def available() -> str | None:
    """None when matplotlib can be used, else why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot
    except ImportError as error:
        return f"matplotlib is not installed ({error}); pip install matplotlib"
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def per_chunk(summary: dict[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    sweep = [r for r in summary["sweep"] if _finite(r["median"])]
    if not sweep:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(
        [r["buffer"] for r in sweep],
        [r["median"] for r in sweep],
        "o-",
        color=COLOURS["adapter"],
        label="adapter (LLM_ASYNC_BUFFER)",
    )
    for row in summary["default"]:
        if row["contender"] != "adapter" and _finite(row["median"]):
            ax.axhline(
                row["median"],
                linestyle="--",
                color=COLOURS[row["contender"]],
                label=f"{row['contender']} ({row['median']:.1f} µs)",
            )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("LLM_ASYNC_BUFFER (chunks)")
    ax.set_ylabel("µs per chunk (median)")
    ax.set_title("Per-chunk cost through llm vs buffer size")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def concurrency(summary: dict[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    from .concurrency import SERIES_LABELS

    series: dict[str, list[dict[str, Any]]] = {}
    for row in summary["rows"]:
        series.setdefault(row["series"], []).append(row)
    if not series:
        return False
    colours = {
        "raised": COLOURS["adapter"],
        "default": "tab:purple",
        "native": COLOURS["native"],
        "0.1": COLOURS["v0.1"],
    }
    fig, ax = plt.subplots(figsize=(7, 4.2))
    counts = sorted({row["n"] for row in summary["rows"]})
    ax.plot(
        counts,
        [summary["ideal_s"]] * len(counts),
        ":",
        color="black",
        label=f"ideal ({summary['ideal_s']:g} s)",
    )
    for name, rows in series.items():
        rows.sort(key=lambda r: r["n"])
        ax.plot(
            [r["n"] for r in rows],
            [r["wall_s"]["median"] for r in rows],
            "o-",
            color=colours.get(name),
            label=SERIES_LABELS.get(name, name).replace("`", ""),
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent prompts")
    ax.set_ylabel("wall time, s (median)")
    ax.set_title(f"Concurrent IO-bound prompts (10 {TIMES} 20 ms each)")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def cancellation(summary: dict[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    rows = [r for r in summary["rows"] if _finite(r["latency_ms"]["median"])]
    if not rows:
        return False
    cases = list(dict.fromkeys(r["case"] for r in rows))
    contenders = list(dict.fromkeys(r["contender"] for r in rows))
    width = 0.8 / len(contenders)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for i, contender in enumerate(contenders):
        xs, ys, errs = [], [], []
        for j, case in enumerate(cases):
            row = next((r for r in rows if r["case"] == case and r["contender"] == contender), None)
            if row is None:
                continue
            xs.append(j + i * width - 0.4 + width / 2)
            ys.append(max(row["latency_ms"]["median"], 0.01))
            errs.append(max(row["latency_ms"]["max"] - row["latency_ms"]["median"], 0))
        ax.bar(
            xs,
            ys,
            width,
            yerr=[[0] * len(errs), errs],
            color=COLOURS.get(contender),
            label=contender,
            capsize=2,
        )
    for i, contender in enumerate(contenders):
        for j, case in enumerate(cases):
            row = next(
                (r for r in summary["rows"] if r["case"] == case and r["contender"] == contender),
                None,
            )
            if row is not None and not _finite(row["latency_ms"]["median"]):
                ax.annotate(
                    "not\nclosed",
                    (j + i * width - 0.4 + width / 2, 0.02),
                    ha="center",
                    fontsize=6,
                    color=COLOURS.get(contender),
                )
    targets = {r["case"]: r["target_ms"] for r in rows}
    for j, case in enumerate(cases):
        ax.hlines(targets[case], j - 0.45, j + 0.45, colors="black", linestyles=":")
    ax.set_xticks(range(len(cases)), cases, rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("stop → generator finally, ms (median, bar to max)")
    ax.set_title("Cancellation latency (dotted: target = interval + 20 ms)")
    ax.grid(True, alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def loop_lag(summary: dict[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    rows = [r for r in summary["rows"] if r["contender"] != "native"]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for contender in dict.fromkeys(r["contender"] for r in rows):
        mine = sorted((r for r in rows if r["contender"] == contender), key=lambda r: r["streams"])
        ks = [r["streams"] for r in mine]
        colour = COLOURS.get(contender)
        for key, style in (("p50_ms", "o--"), ("p99_ms", "s-"), ("max_ms", "^:")):
            values = [max(r[key], FLOOR_MS) if _finite(r[key]) else math.nan for r in mine]
            ax.plot(ks, values, style, color=colour, label=f"{contender} {key[:-3]}")
    ax.axhline(20, color="black", linestyle=":", label="target p99 20 ms")
    ax.set_xlabel("CPU-bound sync streams running")
    ax.set_xticks(sorted({r["streams"] for r in rows}))
    ax.set_ylabel("event-loop lag, ms (log)")
    ax.set_yscale("log")
    ax.set_title("Event-loop lag with CPU-bound sync models in threads")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


PLOTS = {
    "per_chunk": ("per_chunk_vs_buffer.png", per_chunk),
    "concurrency": ("concurrency_scaling.png", concurrency),
    "cancellation": ("cancellation_latency.png", cancellation),
    "loop_lag": ("loop_lag.png", loop_lag),
}


def write(families: dict[str, dict[str, Any]], out: Path) -> tuple[list[str], str | None]:
    """Write every plot whose family ran; returns the files and why plots were skipped."""
    reason = available()
    if reason:
        return [], reason
    written = []
    for name, (filename, draw) in PLOTS.items():
        section = families.get(name)
        if section and draw(section["summary"], out / filename):
            written.append(str(out / filename))
    return written, None
