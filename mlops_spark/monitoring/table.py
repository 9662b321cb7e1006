"""The monitoring table: one row per model version, partition, column, slice, window and
metric, with its thresholds and status; built from the parts a monitor run computes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark import lake
from mlops_spark.config import AppConfig
from mlops_spark.monitoring.frames import ALL, COLUMN, METRIC, SLICE, VALUE
from mlops_spark.monitoring.status import with_status
from mlops_spark.monitoring.targets import LABELS_AVAILABLE

MONITORING_COLUMNS = [
    "model_name",
    "model_version",
    "kind",
    COLUMN,
    SLICE,
    "window_days",
    METRIC,
    VALUE,
    "warn_threshold",
    "alert_threshold",
    "status",
    "relative",
    "threshold_source",
    "reference",
    "run_id",
    "computed_at",
]


def tagged(df: DataFrame, kind: str, version: int, reference: str, column: str | None = None) -> DataFrame:
    """A part of the table: its kind (drift, quality, canary, ...), model version and reference."""
    out = (
        df.withColumn("kind", F.lit(kind))
        .withColumn("model_version", F.lit(version))
        .withColumn("reference", F.lit(reference))
    )
    if column is not None:
        out = out.withColumn(COLUMN, F.lit(column))
    if "window_days" not in out.columns:
        out = out.withColumn("window_days", F.lit(1))
    return out


def labels_available(
    feats: DataFrame,
    label: str,
    date_col: str,
    targets: Sequence[dt.date],
    by_version: Mapping[int, Sequence[dt.date]],
) -> DataFrame:
    """How many labelled rows each partition had when monitored (a later run re-monitors a
    partition whose labels have grown: labels land late)."""
    version_of = [(d, v) for v, ds in by_version.items() for d in ds]
    counts = (
        feats.where(lake.partition_filter(date_col, dates=targets))
        .groupBy(date_col)
        .agg(F.count(F.col(label)).cast("double").alias(VALUE))
    )
    versions = feats.sparkSession.createDataFrame(
        version_of,
        T.StructType(
            [T.StructField(date_col, T.DateType()), T.StructField("model_version", T.IntegerType())]
        ),
    )
    return counts.join(versions, date_col).select(
        date_col,
        "model_version",
        F.lit("quality").alias("kind"),
        F.lit(label).alias(COLUMN),
        F.lit(ALL).alias(SLICE),
        F.lit(1).alias("window_days"),
        F.lit(LABELS_AVAILABLE).alias(METRIC),
        VALUE,
        F.lit("features").alias("reference"),
    )


def assemble(
    parts: Sequence[DataFrame], config: AppConfig, run_id: str, limits: DataFrame | None = None
) -> DataFrame:
    """The parts as the monitoring table's rows, with thresholds and status: ``limits`` (see
    `mlops_spark.monitoring.status.limits_frame`) where calibrated, the config's elsewhere."""
    date_col = config.features.date_column
    table = parts[0]
    for part in parts[1:]:
        table = table.unionByName(part)
    mon = config.monitoring
    return table.transform(with_status(mon.thresholds, mon.column_thresholds, limits)).select(
        F.col(date_col),
        F.lit(config.mlflow.model_name).alias("model_name"),
        F.col("model_version").cast("int"),
        "kind",
        COLUMN,
        SLICE,
        F.col("window_days").cast("int"),
        METRIC,
        VALUE,
        "warn_threshold",
        "alert_threshold",
        "status",
        "relative",
        "threshold_source",
        "reference",
        F.lit(run_id).alias("run_id"),
        F.current_timestamp().alias("computed_at"),
    )


@dataclass(frozen=True)
class StatusCounts:
    alerts: int
    warnings: int
    top: list[str]
    """One line per most frequent alert: kind, column, metric, partitions, worst value."""


def status_counts(
    written: DataFrame, date_col: str, targets: Sequence[dt.date], top: int = 5
) -> StatusCounts:
    """Alerts and warnings among ``targets`` of the written table, and the most frequent alerts."""
    rows = written.where(lake.partition_filter(date_col, dates=targets))
    counts = {
        (r["kind"], r["status"]): int(r["count"]) for r in rows.groupBy("kind", "status").count().collect()
    }
    worst = (
        rows.where((F.col("status") == "alert") & (F.col("window_days") == 1))
        .groupBy("kind", COLUMN, METRIC)
        .agg(F.countDistinct(date_col).alias("partitions"), F.max(VALUE).alias("worst"))
        .orderBy(F.desc("partitions"), F.desc("worst"))
        .limit(top)
        .collect()
    )
    return StatusCounts(
        alerts=sum(n for (_, s), n in counts.items() if s == "alert"),
        warnings=sum(n for (_, s), n in counts.items() if s == "warn"),
        top=[
            f"alert: {r['kind']} {r[COLUMN]} {r[METRIC]} in {r['partitions']} partition(s), "
            f"worst {r['worst']:.3g}"
            for r in worst
        ],
    )


def alerts_on(rows: pd.DataFrame, day: dt.date) -> int:
    """Alert rows of one partition in a run's collected monitoring rows (``date`` column)."""
    return int(((rows["date"] == day) & (rows["status"] == "alert")).sum())
