"""Shapes shared by the orchestrator and the figure families: configuration, jobs, results."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

PROFILES = ("full", "quick", "tiny")


class Unsupported(Exception):
    """A measurement cannot run with this llm or Python; the job is skipped with the reason."""


@dataclasses.dataclass(frozen=True)
class Config:
    """One benchmark run: how big (``profile``), what, and where results go."""

    profile: str = "full"
    out: Path = Path(__file__).resolve().parent / "results"
    families: tuple[str, ...] = ()
    repeats: int | None = None
    warmup: int = 1
    v01: bool = True
    v01_venv: Path | None = None
    plots: bool = True
    timeout: float = 180.0
    quiet: bool = False
    logs: Path | None = None  # worker and pip logs; default .cache/bench-logs/<time>/

    def pick(self, sizes: dict[str, Any]) -> Any:
        """The value of ``sizes`` for this run's profile."""
        return sizes[self.profile]

    def n_repeats(self, default: dict[str, int]) -> int:
        """Repeats for a family: the ``--repeats`` option, else the family's profile default."""
        return self.repeats if self.repeats is not None else default[self.profile]


@dataclasses.dataclass(frozen=True)
class Job:
    """One measurement to repeat: a contender, its parameters and the worker environment.

    Jobs sharing a ``group`` are run in turn, one repeat of each before the next repeat, so
    drift on a shared machine hits every contender alike.
    """

    family: str
    group: str
    case: str
    contender: str
    params: dict[str, Any]
    env: tuple[tuple[str, str], ...] = ()
    repeats: int = 3

    @property
    def key(self) -> str:
        return f"{self.case}|{self.contender}"


@dataclasses.dataclass
class JobResult:
    """The samples of one job (one per repeat) and why any repeat failed or was skipped."""

    job: Job
    samples: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    skipped: str | None = None

    def values(self, name: str) -> list[float]:
        """The ``name`` field of every sample that has it."""
        return [s[name] for s in self.samples if s.get(name) is not None]

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.job.case,
            "contender": self.job.contender,
            "group": self.job.group,
            "params": self.job.params,
            "env": dict(self.job.env),
            "samples": self.samples,
            "errors": self.errors,
            "skipped": self.skipped,
        }


def find(results: list[JobResult], case: str, contender: str) -> JobResult | None:
    """The result of one (case, contender) pair, if it was planned."""
    for result in results:
        if result.job.case == case and result.job.contender == contender:
            return result
    return None
