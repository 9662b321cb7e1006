"""The parts of one monitor run: which partitions each model version scored, the rows to
measure, and per version the drift, realised and estimated quality, with its calibrated limits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mlflow.tracking import MlflowClient
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark import lake, registry
from mlops_spark.config import AppConfig
from mlops_spark.lake import TableRef
from mlops_spark.metrics import higher_is_better
from mlops_spark.metrics.estimated import estimated_binary_metrics, estimated_multiclass_accuracy
from mlops_spark.monitoring.baseline import Baseline, baseline_for
from mlops_spark.monitoring.drift import drift_metrics
from mlops_spark.monitoring.frames import ALL, SLICE
from mlops_spark.monitoring.quality import realised_quality, slice_labels
from mlops_spark.monitoring.status import LimitRow
from mlops_spark.monitoring.table import tagged
from mlops_spark.outputs import PROBABILITIES, PROBABILITY, output_columns
from mlops_spark.scoring.ab import ARM

ESTIMATED = "estimated_quality"


def versions_of(preds: DataFrame, date_col: str, targets: Sequence[dt.date]) -> dict[int, list[dt.date]]:
    """The partitions of ``targets`` each model version scored (one small aggregation)."""
    by_version: dict[int, list[dt.date]] = {}
    rows = (
        preds.where(lake.partition_filter(date_col, dates=targets))
        .select(date_col, "model_version")
        .distinct()
    )
    for row in rows.collect():
        by_version.setdefault(int(row["model_version"]), []).append(row[date_col])
    return by_version


def monitored_rows(
    config: AppConfig,
    preds: DataFrame,
    feats: DataFrame,
    span: tuple[dt.date, dt.date],
    columns: Sequence[str],
) -> DataFrame:
    """Predictions of ``span`` joined with the feature columns that monitoring reads."""
    spec, mon = config.features, config.monitoring
    date_col, entity = spec.date_column, spec.entity_id.name
    label = spec.label.name if spec.label else None
    wanted = [c for c in dict.fromkeys([*columns, *mon.slices, *([label] if label else [])])]
    outputs = [c for c in output_columns(config.model.resolved_task) if c in preds.columns]
    pred_cols = [entity, date_col, "model_version", *outputs, *([ARM] if ARM in preds.columns else [])]
    in_span = lake.partition_filter(date_col, date_range=span)
    return (
        preds.where(in_span)
        .select(*pred_cols)
        .join(
            feats.where(in_span).select(entity, date_col, *[c for c in wanted if c not in outputs]),
            [entity, date_col],
        )
    )


@dataclass
class VersionParts:
    parts: list[DataFrame] = field(default_factory=list)
    limits: list[LimitRow] = field(default_factory=list)
    reads: list[TableRef] = field(default_factory=list)
    baseline: Baseline | None = None
    rows: DataFrame | None = None


def version_parts(
    spark: SparkSession,
    config: AppConfig,
    client: MlflowClient,
    version: int,
    current: DataFrame,
    dates: Sequence[dt.date],
    numeric: list[str],
    categorical: list[str],
    say: Callable[[str], None],
) -> VersionParts:
    """Drift (against the version's own baseline), realised quality where labels are, the
    quality estimated from calibrated probabilities, and the limits that judge them."""
    mon, spec = config.monitoring, config.features
    date_col = spec.date_column
    label = spec.label.name if spec.label else None
    task = config.model.resolved_task
    ref = registry.resolve(client, config.mlflow.model_name, version=version)
    baseline, reads = baseline_for(spark, config, client, ref, numeric, categorical, say)
    out = VersionParts(reads=reads, baseline=baseline)
    rows = current.where(F.col("model_version") == version)
    in_dates = lake.partition_filter(date_col, dates=dates)
    drift = drift_metrics(
        rows, baseline.profile, [date_col], date_col, windows=mon.windows, window_ends=dates
    )
    description = baseline.profile.description
    out.parts.append(
        tagged(drift.where(in_dates).withColumn(SLICE, F.lit(ALL)), "drift", version, description)
    )
    mine = rows.where(in_dates)
    out.rows = mine
    if label is not None:
        quality = realised_quality(mine, task, label, [date_col], mon.slices)
        out.parts.append(tagged(quality, "quality", version, description, label))
    if baseline.probability is not None and label is not None:
        estimated = _estimated(mine, baseline, task, date_col, mon.slices)
        if estimated is not None:
            out.parts.append(tagged(estimated, ESTIMATED, version, "calibrated probabilities", label))
    for (column, metric, window), lim in baseline.drift.limits.items():
        out.limits.append((version, "drift", column, ALL, metric, window, lim, "above"))
    if label is not None:
        for (slice_, metric), lim in baseline.quality.items():
            direction = "below" if higher_is_better(metric) else "above"
            for kind in ("quality", ESTIMATED):
                out.limits.append((version, kind, label, slice_, metric, 1, lim, direction))
    return out


def _estimated(
    rows: DataFrame, baseline: Baseline, task: str, date_col: str, slices: Sequence[str]
) -> DataFrame | None:
    calibration = baseline.probability
    assert calibration is not None
    exploded = rows.withColumn(SLICE, F.explode(slice_labels(slices)))
    if task == "binary" and PROBABILITY in rows.columns:
        return estimated_binary_metrics(exploded, calibration.column(F.col(PROBABILITY)), [date_col, SLICE])
    if task == "multiclass" and PROBABILITIES in rows.columns:
        confidence = calibration.column(F.array_max(F.col(PROBABILITIES)))
        return estimated_multiclass_accuracy(exploded, confidence, [date_col, SLICE])
    return None
