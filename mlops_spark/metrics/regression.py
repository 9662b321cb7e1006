"""Regression metrics in Spark, per group."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops_spark.metrics.frames import long_metrics, require, safe_divide

REGRESSION_METRICS = ("rows", "rmse", "mae", "r2", "bias", "label_mean", "mean_prediction")


def regression_metrics(
    df: DataFrame, label: str, group_cols: Sequence[str] = (), prediction: str = "prediction"
) -> DataFrame:
    """rmse, mae, r2, bias (mean prediction - label), label and prediction means per group
    (long format). R² follows scikit-learn on a constant label: 1 for a perfect fit, else 0."""
    require(df, "labelled predictions", [label, prediction, *group_cols])
    keys = list(group_cols)
    rows = df.where(F.col(label).isNotNull()).select(
        *keys, F.col(label).cast("double").alias("__y"), F.col(prediction).cast("double").alias("__yhat")
    )
    err = F.col("__yhat") - F.col("__y")
    agg = rows.groupBy(*keys).agg(
        F.count(F.lit(1)).alias("rows"),
        F.sqrt(F.avg(err * err)).alias("rmse"),
        F.avg(F.abs(err)).alias("mae"),
        F.avg(err).alias("bias"),
        F.avg("__y").alias("label_mean"),
        F.avg("__yhat").alias("mean_prediction"),
        F.sum(err * err).alias("sse"),
        F.var_pop("__y").alias("var"),
    )
    sst = F.col("var") * F.col("rows")  # Spark's var_pop merges partial moments stably
    r2 = F.when(sst > 0, 1.0 - safe_divide(F.col("sse"), sst)).otherwise(
        F.when(F.col("sse") == 0, F.lit(1.0)).otherwise(F.lit(0.0))
    )
    return long_metrics(
        agg,
        keys,
        {
            "rows": F.col("rows"),
            "rmse": F.col("rmse"),
            "mae": F.col("mae"),
            "r2": r2,
            "bias": F.col("bias"),
            "label_mean": F.col("label_mean"),
            "mean_prediction": F.col("mean_prediction"),
        },
    )
