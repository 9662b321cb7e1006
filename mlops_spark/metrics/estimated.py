"""Quality before labels land: confidence-based performance estimation (CBPE).

A classifier's calibrated probability is the chance that the row's label is 1. Taking that
chance as a *soft label*, every metric of `mlops_spark.metrics.binary` has an expected value
given the predictions alone: expected true / false positives and negatives (so accuracy,
precision, recall, F1), the expected rank statistic (ROC AUC with soft positives and
negatives), the expected log loss and Brier score. It holds while the model stays calibrated
on the new rows, which is what covariate drift without concept drift preserves; a change in
how labels relate to the features (concept drift) is invisible to it until labels land, and
the realised-vs-estimated gap is what shows it.

Multiclass: the expected accuracy is the mean calibrated confidence of the predicted class.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mlops_spark.metrics.binary import rank_metrics
from mlops_spark.metrics.frames import clipped, join_groups, long_metrics, require, safe_divide

ESTIMATED_BINARY = (
    "rows",
    "positive_rate",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "log_loss",
    "brier",
    "areaUnderROC",
)


def estimated_binary_metrics(
    df: DataFrame,
    calibrated: Column,
    group_cols: Sequence[str] = (),
    probability: str = "probability",
    prediction: str = "prediction",
) -> DataFrame:
    """Expected metrics of unlabelled predictions per group (long format), with ``calibrated``
    the calibrated P(label = 1) of each row and ``probability`` the model's own score (what
    ranks the rows for AUC and what the log loss scores)."""
    require(df, "predictions", [probability, prediction, *group_cols])
    keys = list(group_cols)
    rows = df.select(
        *keys,
        calibrated.cast("double").alias("__y"),
        F.col(probability).cast("double").alias("__p"),
        F.col(prediction).cast("double").alias("__yhat"),
    ).where(F.col("__y").isNotNull() & F.col("__p").isNotNull())
    q, p, yhat = F.col("__y"), F.col("__p"), F.col("__yhat")
    loss = -(q * F.log(clipped(p)) + (1 - q) * F.log(clipped(1 - p)))
    basic = rows.groupBy(*keys).agg(
        F.count(F.lit(1)).alias("rows"),
        F.avg(q).alias("positive_rate"),
        F.sum(yhat * q).alias("tp"),
        F.sum(yhat * (1 - q)).alias("fp"),
        F.sum((1 - yhat) * q).alias("fn"),
        F.sum((1 - yhat) * (1 - q)).alias("tn"),
        F.avg(loss).alias("log_loss"),
        F.avg(q * F.pow(1 - p, 2) + (1 - q) * F.pow(p, 2)).alias("brier"),
    )
    ranked = rank_metrics(rows, keys)
    tp, fp, fn, tn = (F.col(c) for c in ("tp", "fp", "fn", "tn"))
    metrics = {
        "rows": F.col("rows"),
        "positive_rate": F.col("positive_rate"),
        "accuracy": safe_divide(tp + tn, F.col("rows")),
        "precision": F.coalesce(safe_divide(tp, tp + fp), F.lit(0.0)),
        "recall": F.coalesce(safe_divide(tp, tp + fn), F.lit(0.0)),
        "f1": F.coalesce(safe_divide(2 * tp, 2 * tp + fp + fn), F.lit(0.0)),
        "log_loss": F.col("log_loss"),
        "brier": F.col("brier"),
        "areaUnderROC": F.col("auc"),
    }
    return long_metrics(join_groups(basic, ranked, keys), keys, metrics)


def estimated_multiclass_accuracy(
    df: DataFrame, calibrated_confidence: Column, group_cols: Sequence[str] = ()
) -> DataFrame:
    """Expected accuracy (the mean calibrated confidence of the predicted class) per group."""
    keys = list(group_cols)
    rows = df.select(*keys, calibrated_confidence.cast("double").alias("__c")).where(F.col("__c").isNotNull())
    agg = rows.groupBy(*keys).agg(F.count(F.lit(1)).alias("rows"), F.avg("__c").alias("accuracy"))
    return long_metrics(agg, keys, {"rows": F.col("rows"), "accuracy": F.col("accuracy")})
