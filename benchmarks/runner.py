"""Run the selected figure families: plan jobs, alternate contenders across workers, collect."""

from __future__ import annotations

import contextlib
import datetime
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from . import families as registry
from . import machine, venv01
from .contenders import REPO_ROOT, TWIN_CONTENDERS, kind_of
from .pool import Pool, WorkerError
from .spec import Config, Job, JobResult

OPTIONS_NOTE = (
    "0.1 drops the model's Options, so every option fails there; the benchmark "
    "set the 0.1 twin's Options from the sync model at run time."
)


def selected(cfg: Config) -> list[ModuleType]:
    """The families to run, in report order."""
    if not cfg.families:
        return list(registry.ORDER)
    unknown = set(cfg.families) - set(registry.BY_NAME)
    if unknown:
        raise SystemExit(
            f"unknown families: {', '.join(sorted(unknown))}; known: {', '.join(registry.BY_NAME)}"
        )
    return [f for f in registry.ORDER if f.NAME in cfg.families]


class Runner:
    """One benchmark run from configuration to the raw and summarised results."""

    def __init__(self, cfg: Config, log: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.say = log or (lambda text: None if cfg.quiet else print(text, file=sys.stderr))
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.logs = cfg.logs or REPO_ROOT / ".cache" / "bench-logs" / stamp
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pythons: dict[str, str] = {"0.2": sys.executable}
        self.notes: list[str] = []
        self.v01_error: str | None = None
        self.hellos: dict[str, dict[str, Any]] = {}
        self.sources: set[str] = set()

    def prepare_v01(self, chosen: list[ModuleType]) -> None:
        """Create the 0.1 environment if needed; real models' extras are optional."""
        if not self.cfg.v01:
            self.v01_error = "0.1 contender disabled (--no-v01)"
            return
        log = self.logs / "venv-0.1.log"
        self.say(f"preparing the 0.1 environment ({self.cfg.v01_venv or venv01.DEFAULT_PATH})")
        started = time.perf_counter()
        try:
            python = venv01.ensure(self.cfg.v01_venv, log)
        except (RuntimeError, OSError) as error:
            self.v01_error = f"could not create the 0.1 environment: {error}"
            self.notes.append(self.v01_error)
            return
        self.pythons["0.1"] = str(python)
        extras = [e for f in chosen if hasattr(f, "v01_extras") for e in f.v01_extras(self.cfg)]
        if extras:
            try:
                venv01.ensure(self.cfg.v01_venv, log, extras)
            except (RuntimeError, OSError) as error:
                self.notes.append(f"0.1 environment lacks the real models' packages: {error}")
        self.say(f"0.1 environment ready in {time.perf_counter() - started:.1f}s")

    def run(self) -> dict[str, Any]:
        chosen = selected(self.cfg)
        started = time.perf_counter()
        meta = machine.describe()
        self.prepare_v01(chosen)
        report: dict[str, Any] = {
            "schema": "llm-all-models-async-benchmarks/1",
            "meta": meta,
            "config": {
                "profile": self.cfg.profile,
                "repeats": self.cfg.repeats,
                "warmup": self.cfg.warmup,
                "families": [f.NAME for f in chosen],
                "v01": self.cfg.v01,
            },
            "families": {},
            "notes": self.notes,
        }
        with tempfile.TemporaryDirectory(prefix="bench-users-") as users:
            for family in chosen:
                report["families"][family.NAME] = self.run_family(family, Path(users))
        report["workers"] = self.hellos
        report["meta"]["adapter_sources"] = sorted(self.sources)
        if len(self.sources) > 1:
            self.notes.append(
                "The adapter's source changed during this run (digests "
                + ", ".join(sorted(self.sources))
                + "): figures mix versions; run it again."
            )
        report["meta"]["duration_s"] = round(time.perf_counter() - started, 1)
        report["meta"]["load_average_end"] = machine.load_average()
        report["meta"]["logs"] = str(self.logs)
        return report

    def run_family(self, family: ModuleType, users: Path) -> dict[str, Any]:
        self.say(f"== {family.NAME}")
        started = time.perf_counter()
        has_context = hasattr(family, "context")
        context = family.context(self.cfg) if has_context else contextlib.nullcontext()
        with context as setup:
            jobs = family.plan(self.cfg, setup) if has_context else family.plan(self.cfg)
            pool = Pool(self.pythons, self.logs, users / family.NAME)
            try:
                results = self.run_jobs(family, jobs, pool)
            finally:
                for kind, hello in pool.hellos.items():
                    self.hellos.setdefault(kind, hello)
                self.sources |= pool.sources
                pool.close()
        summary = family.summarize(results, self.cfg)
        skipped = dict(setup["skipped"]) if has_context and setup else {}
        for result in results:
            if result.skipped:
                skipped[f"{result.job.case} / {result.job.contender}"] = result.skipped
        patched = any(s.get("_options_patched") for r in results for s in r.samples)
        return {
            "title": family.TITLE,
            "summary": summary,
            "skipped": skipped,
            "errors": {f"{r.job.case} / {r.job.contender}": r.errors for r in results if r.errors},
            "options_patched": patched,
            "duration_s": round(time.perf_counter() - started, 1),
            "raw": [r.to_json() for r in results],
        }

    def run_jobs(self, family: ModuleType, jobs: list[Job], pool: Pool) -> list[JobResult]:
        """Run every job; within a group, one repeat of each job before the next repeat."""
        results = {job.key: JobResult(job) for job in jobs}
        groups: dict[str, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.group, []).append(job)
        warmup = min(getattr(family, "WARMUP", self.cfg.warmup), self.cfg.warmup)
        for group, members in groups.items():
            rounds = warmup + max(job.repeats for job in members)
            for index in range(rounds):
                shift = index % len(members)
                for job in members[shift:] + members[:shift]:
                    if index >= warmup + job.repeats:
                        continue
                    self.run_one(
                        family,
                        job,
                        results[job.key],
                        pool,
                        warm=index < warmup,
                        label=f"{group} {index + 1}/{rounds}",
                    )
        return list(results.values())

    def run_one(
        self, family: ModuleType, job: Job, result: JobResult, pool: Pool, warm: bool, label: str
    ) -> None:
        if result.skipped:
            return
        kind = kind_of(job.contender)
        if kind == "0.1" and "0.1" not in self.pythons:
            result.skipped = self.v01_error or "0.1 environment unavailable"
            return
        try:
            worker = pool.get(kind, job.env)
        except WorkerError as error:
            result.skipped = f"worker did not start: {error}"
            return
        if job.contender in TWIN_CONTENDERS and worker.hello.get("adapter_error"):
            result.skipped = f"adapter unavailable: {worker.hello['adapter_error']}"
            return
        try:
            reply = worker.call(family.NAME, job.contender, job.params, self.cfg.timeout)
        except WorkerError as error:
            pool.failed[(kind, job.env)] = str(error)
            pool.workers.pop((kind, job.env), None)
            result.errors.append(str(error))
            result.skipped = f"worker failed: {error}"
            return
        if reply.get("unsupported"):
            result.skipped = f"not supported here: {reply['unsupported']}"
            return
        if not reply.get("ok"):
            result.errors.append(reply.get("error", "unknown error"))
            result.skipped = f"error: {reply.get('error')}"
            self.say(f"  {label} {job.contender} {job.case}: ERROR {reply.get('error')}")
            return
        sample = dict(reply["result"])
        if reply.get("options_patched"):
            sample["_options_patched"] = True
        if not warm:
            result.samples.append(sample)
        headline = getattr(family, "HEADLINE", None)
        shown = sample.get(headline) if headline else None
        extra = f" {headline}={shown:.2f}" if isinstance(shown, float) else ""
        self.say(f"  {label}{' (warm-up)' if warm else ''} {job.contender} {job.case}{extra}")
