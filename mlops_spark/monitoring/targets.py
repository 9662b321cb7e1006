"""Which prediction partitions a monitor run (re)computes, by the shared partition policy.

Incremental: a partition is done when every model version that scored it is monitored
and its labelled rows have not grown since (labels land late, so a partition is
re-monitored when more of them arrive). An explicit range redoes its partitions.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark import lake
from mlops_spark.catalog import Table
from mlops_spark.monitoring.frames import METRIC, VALUE
from mlops_spark.partition_policy import Selection, select_partitions

LABELS_AVAILABLE = "labels_available"


def up_to_date(
    spark: SparkSession,
    preds: DataFrame,
    feats: DataFrame,
    monitoring: Table,
    date_col: str,
    label: str | None,
) -> set[dt.date]:
    """Partitions whose monitoring rows cover every version that scored them, with no new labels."""
    scored = {
        (r[date_col], int(r["model_version"]))
        for r in preds.select(date_col, "model_version").distinct().collect()
    }
    if not lake.exists(spark, monitoring):
        return set()
    mon, _ = lake.read_table(spark, monitoring)
    seen = {
        (r[date_col], int(r["model_version"])): r["labels"]
        for r in mon.where(F.col("kind").isin("drift", "quality"))
        .groupBy(date_col, "model_version")
        .agg(F.max(F.when(F.col(METRIC) == LABELS_AVAILABLE, F.col(VALUE))).alias("labels"))
        .collect()
    }
    stale = {d for d, v in scored if (d, v) not in seen}
    if label is not None:
        known = {d: seen.get((d, v)) for d, v in scored if (d, v) in seen}
        if known:
            now = {
                r[date_col]: int(r["n"])
                for r in feats.where(lake.partition_filter(date_col, dates=list(known)))
                .groupBy(date_col)
                .agg(F.count(F.col(label)).alias("n"))
                .collect()
            }
            stale |= {d for d, before in known.items() if now.get(d, 0) > int(before or 0)}
    return {d for d, _ in scored} - stale


def monitor_targets(
    spark: SparkSession,
    predictions: Table,
    preds: DataFrame,
    feats: DataFrame,
    monitoring: Table,
    label: str | None,
    requested: tuple[dt.date, dt.date] | None,
) -> Selection:
    date_col = predictions.date_column
    assert date_col is not None
    return select_partitions(
        predictions.name,
        lake.list_partitions(spark, predictions),
        requested,
        lambda: up_to_date(spark, preds, feats, monitoring, date_col, label),
        "run the score job for them first",
    )
