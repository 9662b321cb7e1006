"""Thresholds calibrated on the reference: what a metric looks like on days the model knows.

A day of weather or a rolling week is narrow next to months of training rows, so a fixed PSI
threshold fires on every day by construction. Calibration measures each metric on chunks of
the reference shaped like what is monitored (each day, each rolling window), each against the
*rest* of the reference (its own rows taken out of the reference histograms), and sets warn and
alert from that spread, per column, metric and window:

* ``quantile`` (default): warn = the ``warn`` quantile of the chunks' values, alert = the
  ``alert`` quantile times ``margin`` (with ``alert: 1.0``, a margin above the largest value
  any reference day had: a day inside the training range does not alert by construction);
* ``std``: warn = mean + ``k_warn`` standard deviations, alert = mean + ``k_alert``.

Metrics where smaller is worse (none of the drift metrics) are not calibrated here. The
calibration is part of the model's monitoring baseline (`mlops_spark.monitoring.baseline`),
stored with the model's MLflow run, so a model is always watched with its own limits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlops_spark.config import CalibrationConfig

Key = tuple[str, str, int]
"""(column, metric, window_days)."""


@dataclass(frozen=True)
class Limits:
    """Calibrated warn/alert of one (column, metric, window) and the spread they came from."""

    warn: float
    alert: float
    mean: float
    std: float
    chunks: int

    def relative(self, value: float) -> float | None:
        """How unusual ``value`` is next to the reference chunks: (value - mean) / std."""
        return None if self.std <= 0 else (value - self.mean) / self.std


def quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of already sorted values."""
    if not sorted_values:
        return math.nan
    pos = q * (len(sorted_values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def limits_of(values: Iterable[float], settings: CalibrationConfig) -> Limits | None:
    """Warn/alert from one metric's values on the reference chunks; None for too few chunks."""
    ordered = sorted(v for v in values if v is not None and math.isfinite(v))
    if len(ordered) < settings.min_chunks:
        return None
    mean = sum(ordered) / len(ordered)
    std = math.sqrt(sum((v - mean) ** 2 for v in ordered) / len(ordered))
    if settings.method == "std":
        warn, alert = mean + settings.k_warn * std, mean + settings.k_alert * std
    else:
        warn = quantile(ordered, settings.warn)
        alert = quantile(ordered, settings.alert) * settings.margin
    floor = settings.min_alert
    return Limits(warn=max(warn, 0.0), alert=max(alert, warn, floor), mean=mean, std=std, chunks=len(ordered))


@dataclass(frozen=True)
class Calibration:
    """Calibrated limits by (column, metric, window_days)."""

    limits: Mapping[Key, Limits]
    short: Mapping[Key, int] = field(default_factory=dict)
    """Keys measured on fewer than ``min_chunks`` finite reference chunks (the count): they
    keep the fixed thresholds. Not saved: only the build reports it."""

    def get(self, column: str, metric: str, window: int) -> Limits | None:
        return self.limits.get((column, metric, window))

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {"column": c, "metric": m, "window_days": w, **vars(lim)}
            for (c, m, w), lim in sorted(self.limits.items())
        ]

    @classmethod
    def from_json(cls, rows: Iterable[Mapping[str, Any]]) -> Calibration:
        limits = {
            (str(r["column"]), str(r["metric"]), int(r["window_days"])): Limits(
                float(r["warn"]), float(r["alert"]), float(r["mean"]), float(r["std"]), int(r["chunks"])
            )
            for r in rows
        }
        return cls(limits)


def calibrate(
    rows: Iterable[Mapping[str, Any]], settings: CalibrationConfig, metrics: Iterable[str]
) -> Calibration:
    """Limits for every (column, metric, window) among ``rows`` of (column, metric,
    window_days, value) measured on reference chunks; only the listed ``metrics``."""
    wanted = set(metrics)
    values: dict[Key, list[float]] = {}
    for r in rows:
        if r["metric"] in wanted and r["value"] is not None:
            values.setdefault((str(r["column"]), str(r["metric"]), int(r["window_days"])), []).append(
                float(r["value"])
            )
    limits = {key: lim for key, vs in values.items() if (lim := limits_of(vs, settings)) is not None}
    short = {key: sum(1 for v in vs if math.isfinite(v)) for key, vs in values.items() if key not in limits}
    return Calibration(limits, short)


def describe_short(calibration: Calibration, min_chunks: int, shown: int = 3) -> str | None:
    """One line on the (column, metric, window) keys left with fixed thresholds, or None."""
    if not calibration.short:
        return None
    columns = sorted({c for c, _, _ in calibration.short})
    fewest = min(calibration.short.values())
    names = ", ".join(columns[:shown]) + (f" and {len(columns) - shown} more" if len(columns) > shown else "")
    return (
        f"{len(calibration.short)} drift limit(s) of {names} kept the fixed thresholds: "
        f"as few as {fewest} reference chunk(s) with a value, fewer than "
        f"monitoring.calibration.min_chunks={min_chunks} (a longer reference, or a smaller min_chunks)"
    )
