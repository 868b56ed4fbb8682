"""Small statistics helpers: medians and percentiles of repeated measurements."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable, Sequence

TIMES = "\u00d7"  # the multiplication sign, for ratios
DASH = "\u2013"  # an en dash, for missing values


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0 to 100) with linear interpolation; NaN for no values."""
    data = sorted(values)
    if not data:
        return math.nan
    if len(data) == 1:
        return float(data[0])
    rank = (len(data) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(data) - 1)
    return float(data[low] + (data[high] - data[low]) * (rank - low))


def median(values: Iterable[float]) -> float:
    """The median, or NaN when there are no values."""
    data = [v for v in values if v is not None and not math.isnan(v)]
    return float(statistics.median(data)) if data else math.nan


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, minimum and maximum of repeats, for tables that show the noise."""
    data = [v for v in values if v is not None and not math.isnan(v)]
    if not data:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {"median": median(data), "min": min(data), "max": max(data), "n": len(data)}


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when either is missing or the denominator is 0."""
    if not denominator or math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    return numerator / denominator


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median of per-round ratios of two contenders measured in the same rounds.

    Pairing each repeat with its neighbour in time cancels drift that a ratio of medians
    keeps (another process starting on a shared machine slows both alike). Falls back to the
    ratio of medians when the rounds do not pair up.
    """
    if len(numerators) != len(denominators) or not numerators:
        return ratio(median(numerators), median(denominators))
    return median([ratio(a, b) for a, b in zip(numerators, denominators, strict=True)])


def paired_interval(
    numerators: Sequence[float],
    denominators: Sequence[float],
    level: float = 0.95,
    resamples: int = 2000,
) -> tuple[float, float]:
    """A bootstrap interval for :func:`paired_ratio`: how far its median could move by chance.

    On a host whose speed drifts by a tenth between neighbouring rounds, a ratio of 0.95 from
    nine rounds and one of 1.00 can be the same result; the interval tells a reader whether a
    target was missed or only not shown. Resampled with a fixed seed, so a report regenerated
    from the same samples says the same. NaN, NaN when fewer than three rounds pair up.
    """
    if len(numerators) != len(denominators) or len(numerators) < 3:
        return math.nan, math.nan
    ratios = [ratio(a, b) for a, b in zip(numerators, denominators, strict=True)]
    if any(math.isnan(r) for r in ratios):
        return math.nan, math.nan
    draw = random.Random(len(ratios)).choices
    medians = [statistics.median(draw(ratios, k=len(ratios))) for _ in range(resamples)]
    tail = (1 - level) / 2 * 100
    return percentile(medians, tail), percentile(medians, 100 - tail)


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    """A number for a Markdown cell; an en dash for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:.{digits}f}{unit}"


def interval(bounds: Sequence[float] | None, digits: int = 2) -> str:
    """`` [low-high]`` (en dash) to follow a ratio in a table cell; empty without an interval."""
    if not bounds or any(math.isnan(b) for b in bounds):
        return ""
    low, high = bounds
    return f" [{low:.{digits}f}{DASH}{high:.{digits}f}]"
