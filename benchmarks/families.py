"""The registry of figure families, in the order they run and are reported."""

from __future__ import annotations

from types import ModuleType

from . import (
    cancellation,
    concurrency,
    first_chunk,
    head_to_head,
    loop_lag,
    per_chunk,
    real,
    shapes,
    stall,
    threads,
    wakeup,
)

ORDER: tuple[ModuleType, ...] = (
    per_chunk,
    first_chunk,
    cancellation,
    concurrency,
    loop_lag,
    stall,
    threads,
    shapes,
    real,
    head_to_head,
    wakeup,
)
BY_NAME: dict[str, ModuleType] = {family.NAME: family for family in ORDER}
