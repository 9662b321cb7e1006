"""Realised quality of labelled predictions per group and slice (metrics from `mlops_spark.metrics`)."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mlops_spark.metrics import Task, task_metrics
from mlops_spark.monitoring.frames import ALL, SLICE, require


def slice_labels(slices: Sequence[str]) -> Column:
    """['all', 'carrier=AA', 'origin=JFK', ...] for each row: quality is computed per label."""
    return F.array(
        F.lit(ALL),
        *[F.concat(F.lit(f"{c}="), F.coalesce(F.col(c).cast("string"), F.lit("null"))) for c in slices],
    )


def realised_quality(
    df: DataFrame, task: Task, label: str, group_cols: Sequence[str], slices: Sequence[str] = ()
) -> DataFrame:
    """The task's metrics per group and slice (long format: group..., slice, metric, value);
    the 'all' slice holds every row of the group, each other slice one value of a column."""
    require(df, "labelled predictions", [*group_cols, *slices])
    exploded = df.withColumn(SLICE, F.explode(slice_labels(slices)))
    return task_metrics(exploded, task, label, [*group_cols, SLICE])
