"""Alerts that rank causes: per monitored partition, which columns changed and by how much
next to their own reference spread, whether the prediction moved with them, and what that
did to the (estimated, then realised) quality.

Works on the monitoring table's rows for a few partitions (a small pandas frame: about a
hundred rows per partition), so the job summary and the report say the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from mlops_spark.monitoring.frames import ALL

PRIMARY_QUALITY = {"binary": "areaUnderROC", "multiclass": "accuracy", "regression": "rmse"}
"""The quality metric each task's summary leads with."""

ESTIMATED = "estimated_quality"
FLAGGED = ("warn", "alert")


@dataclass(frozen=True)
class Cause:
    column: str
    metric: str
    status: str
    value: float
    relative: float | None
    """How many reference standard deviations the value is beyond the reference chunks' mean
    (None where the threshold is fixed, not calibrated)."""

    def describe(self) -> str:
        size = f"{self.relative:+.1f}σ" if self.relative is not None else f"{self.value:.3g}"
        return f"{self.column} {size} ({self.metric} {self.status})"


def _strength(row: pd.Series) -> float:
    """Orders causes: calibrated distance first; else how far past its alert threshold."""
    rel = row.get("relative")
    if rel is not None and not pd.isna(rel):
        return float(rel)
    bound = row.get("alert_threshold")
    if bound is not None and not pd.isna(bound) and float(bound) != 0:
        return float(row["value"]) / abs(float(bound))
    return 0.0


def column_causes(rows: pd.DataFrame, columns: Sequence[str] | None = None) -> list[Cause]:
    """The flagged drift of one partition's single-day rows, strongest first, one cause per
    column (its strongest metric)."""
    d = rows[(rows.kind == "drift") & (rows.window_days == 1) & rows.status.isin(FLAGGED)]
    if columns is not None:
        d = d[d.column.isin(list(columns))]
    if d.empty:
        return []
    d = d.assign(__s=[_strength(r) for _, r in d.iterrows()], __a=(d.status == "alert").astype(int))
    best = d.sort_values(["__a", "__s"], ascending=False).drop_duplicates("column")
    return [
        Cause(
            str(r["column"]),
            str(r["metric"]),
            str(r["status"]),
            float(r["value"]),
            None if pd.isna(r.get("relative")) else float(r["relative"]),
        )
        for r in best.to_dict("records")
    ]


def _metric(rows: pd.DataFrame, kind: str, metric: str) -> float | None:
    q = rows[(rows.kind == kind) & (rows.metric == metric) & (rows.slice == ALL) & (rows.window_days == 1)]
    return None if q.empty else float(q.value.iloc[0])


def _status(rows: pd.DataFrame, kind: str, metric: str) -> str:
    q = rows[(rows.kind == kind) & (rows.metric == metric) & (rows.slice == ALL) & (rows.window_days == 1)]
    return "" if q.empty else str(q.status.iloc[0])


def rank_causes(
    metrics: pd.DataFrame,
    task: str,
    prediction_columns: Sequence[str],
    holdout: Mapping[int, Mapping[str, float]] | None = None,
    top: int = 3,
) -> pd.DataFrame:
    """One row per (date, model_version) of ``metrics`` (monitoring-table rows with a
    ``date`` column): its status, the ``top`` changed feature columns with their size in
    reference standard deviations, whether the prediction moved, the estimated and the
    realised primary quality metric and the estimate's change from the holdout's value."""
    primary = PRIMARY_QUALITY[task]
    holdout = holdout or {}
    out = []
    for (date, version), rows in metrics.groupby(["date", "model_version"], sort=True):
        features = [c for c in column_causes(rows) if c.column not in prediction_columns]
        moved = column_causes(rows, prediction_columns)
        estimated = _metric(rows, ESTIMATED, primary)
        realised = _metric(rows, "quality", primary)
        reference = holdout.get(int(version), {}).get(primary)
        change = estimated - reference if estimated is not None and reference is not None else None
        status = "ok"
        if rows.status.eq("warn").any():
            status = "warn"
        if rows.status.eq("alert").any():
            status = "alert"
        out.append(
            {
                "date": date,
                "model_version": int(version),
                "status": status,
                "alerts": int(rows.status.eq("alert").sum()),
                "changed columns": "; ".join(c.describe() for c in features[:top])
                + (f"; +{len(features) - top} more" if len(features) > top else ""),
                "prediction moved": "; ".join(c.describe() for c in moved) or "no",
                f"estimated {primary}": _num(estimated),
                "estimated vs holdout": _num(change),
                f"estimated {primary} status": _status(rows, ESTIMATED, primary),
                f"realised {primary}": _num(realised),
                f"realised {primary} status": _status(rows, "quality", primary),
            }
        )
    return pd.DataFrame(out)


def _num(v: float | None) -> float:
    return math.nan if v is None else float(v)


def summary_lines(causes: pd.DataFrame, task: str, limit: int = 5) -> list[str]:
    """The job's closing lines: the flagged partitions, worst first."""
    if causes.empty:
        return []
    primary = PRIMARY_QUALITY[task]
    flagged = causes[causes.status != "ok"].sort_values(["alerts", "date"], ascending=[False, False])
    lines = []
    for row in flagged.head(limit).to_dict("records"):
        parts = [f"{row['date']} v{row['model_version']}: {row['status']}"]
        if row["changed columns"]:
            parts.append(f"changed {row['changed columns']}")
        parts.append(f"prediction moved: {row['prediction moved']}")
        est, real = row[f"estimated {primary}"], row[f"realised {primary}"]
        if not math.isnan(est):
            parts.append(f"estimated {primary} {est:.3f} ({row['estimated vs holdout']:+.3f} vs holdout)")
        if not math.isnan(real):
            parts.append(f"realised {real:.3f}")
        lines.append("; ".join(parts))
    if len(flagged) > limit:
        lines.append(f"... and {len(flagged) - limit} more flagged partition(s): see the report")
    return lines
