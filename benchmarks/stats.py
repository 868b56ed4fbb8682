"""Small statistics helpers: medians and percentiles of repeated measurements."""

from __future__ import annotations

import math
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


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    """A number for a Markdown cell; an en dash for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:.{digits}f}{unit}"
