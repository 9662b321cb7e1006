"""Histograms of current data on the reference's grid, computed by executors.

Current data is bucketed on the reference's quantile grid (pyspark.ml's ``Bucketizer``: a
binary search per value) and aggregated per (group, column, bucket). Histograms are
additive, so rolling windows are sums of daily histograms, not second passes over the data.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence

from pyspark.ml.feature import Bucketizer
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mlops_spark.monitoring.frames import BUCKET, COLUMN, TOTAL, VALUE, N, require


def as_double(column: str) -> Column:
    value = F.col(column).cast("double")
    return F.when(F.isnan(value), F.lit(None).cast("double")).otherwise(value)


def bucket_splits(edges: Sequence[float]) -> list[float]:
    # Bucketizer's buckets are [s_i, s_i+1); splitting just above each edge makes them
    # right-closed, (g_k-1, g_k], so cumulative counts are exact CDFs at the grid points.
    return [-math.inf, *[math.nextafter(e, math.inf) for e in edges], math.inf]


def numeric_histograms(
    df: DataFrame, edges: Mapping[str, Sequence[float]], group_cols: Sequence[str]
) -> DataFrame:
    """(group..., column, bucket, n, total) for each numeric column on its grid.

    ``bucket`` is null for null (and NaN) values; ``total`` is the sum of the values.
    """
    columns = [c for c in edges if edges[c]]
    require(df, "current data", [*group_cols, *columns])
    values = [f"__v{i}" for i in range(len(columns))]
    buckets = [f"__b{i}" for i in range(len(columns))]
    clean = df.select(*group_cols, *[as_double(c).alias(v) for c, v in zip(columns, values, strict=True)])
    bucketed = Bucketizer(
        splitsArray=[bucket_splits(edges[c]) for c in columns],
        inputCols=values,
        outputCols=buckets,
        handleInvalid="keep",
    ).transform(clean)
    entries = F.array(
        *[
            F.struct(
                F.lit(c).alias(COLUMN),
                F.col(b).cast("int").alias(BUCKET),
                F.col(v).alias(VALUE),
            )
            for c, v, b in zip(columns, values, buckets, strict=True)
        ]
    )
    long = bucketed.select(*group_cols, F.inline(entries))
    return long.groupBy(*group_cols, COLUMN, BUCKET).agg(
        F.count(F.lit(1)).alias(N), F.sum(VALUE).alias(TOTAL)
    )


def categorical_histograms(df: DataFrame, columns: Sequence[str], group_cols: Sequence[str]) -> DataFrame:
    """(group..., column, category, n); values as strings, ``category`` null for nulls."""
    require(df, "current data", [*group_cols, *columns])
    entries = F.array(
        *[F.struct(F.lit(c).alias(COLUMN), F.col(c).cast("string").alias("category")) for c in columns]
    )
    long = df.select(*group_cols, F.inline(entries))
    return long.groupBy(*group_cols, COLUMN, "category").agg(F.count(F.lit(1)).alias(N))


def rolling_histograms(hist: DataFrame, date_column: str, days: int, ends: Sequence[dt.date]) -> DataFrame:
    """Histograms summed over the ``days`` partitions ending at each date of ``ends``.

    Histograms are additive, so a window's drift costs a join of small tables, not a
    second pass over the data. The result is keyed like ``hist`` with ``date_column``
    holding the window's last day.
    """
    spark = hist.sparkSession
    ends_df = spark.createDataFrame([(d,) for d in sorted(set(ends))], "__end date")
    joined = hist.join(
        F.broadcast(ends_df),
        (F.col(date_column) <= F.col("__end")) & (F.col(date_column) > F.date_sub(F.col("__end"), days)),
    )
    others = [c for c in hist.columns if c not in {date_column, N, TOTAL}]
    aggs = [F.sum(N).alias(N)]
    if TOTAL in hist.columns:
        aggs.append(F.sum(TOTAL).alias(TOTAL))
    return joined.groupBy(F.col("__end").alias(date_column), *others).agg(*aggs).select(*hist.columns)
