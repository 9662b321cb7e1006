"""Binary classification metrics in Spark, exact, per group.

ROC AUC is the Mann-Whitney statistic from counts per distinct score (ties count one
half); average precision is scikit-learn's step-wise area under the precision-recall
curve; both come from one window over the distinct scores of each group, not a binned
curve, so every caller (training, tuning, the promotion gate, monitoring, segmented
models, A/B tests) gets the same number for the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from mlops_spark.metrics.frames import clipped, join_groups, long_metrics, require, safe_divide

BINARY_METRICS = (
    "rows",
    "positive_rate",
    "predicted_positive_rate",
    "mean_probability",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "log_loss",
    "brier",
    "areaUnderROC",
    "average_precision",
)


def binary_metrics(
    df: DataFrame,
    label: str,
    group_cols: Sequence[str] = (),
    probability: str = "probability",
    prediction: str = "prediction",
) -> DataFrame:
    """Metrics of labelled rows per group (long format: group..., metric, value).

    ``label`` is 0/1, ``probability`` P(label = 1) as a double, ``prediction`` the model's
    0/1 decision. Precision, recall and F1 are 0 when undefined (scikit-learn's
    ``zero_division=0``); ROC AUC and average precision are left out for a one-class group.
    Rows without a label are not counted.
    """
    require(df, "labelled predictions", [label, probability, prediction, *group_cols])
    keys = list(group_cols)
    rows = df.where(F.col(label).isNotNull()).select(
        *keys,
        F.col(label).cast("double").alias("__y"),
        F.col(probability).cast("double").alias("__p"),
        F.col(prediction).cast("double").alias("__yhat"),
    )
    y, p, yhat = F.col("__y"), F.col("__p"), F.col("__yhat")
    # as scikit-learn: -log of the clipped probability given to the true class
    loss = F.when(y == 1.0, -F.log(clipped(p))).otherwise(-F.log(clipped(1.0 - p)))
    basic = rows.groupBy(*keys).agg(
        F.count(F.lit(1)).alias("rows"),
        F.avg(y).alias("positive_rate"),
        F.avg(yhat).alias("predicted_positive_rate"),
        F.avg(p).alias("mean_probability"),
        F.sum(yhat * y).alias("tp"),
        F.sum(yhat * (1 - y)).alias("fp"),
        F.sum((1 - yhat) * y).alias("fn"),
        F.sum((1 - yhat) * (1 - y)).alias("tn"),
        F.avg(loss).alias("log_loss"),
        F.avg(F.pow(p - y, 2)).alias("brier"),
    )
    ranked = rank_metrics(rows, keys)
    tp, fp, fn, tn = (F.col(c) for c in ("tp", "fp", "fn", "tn"))
    metrics = {
        "rows": F.col("rows"),
        "positive_rate": F.col("positive_rate"),
        "predicted_positive_rate": F.col("predicted_positive_rate"),
        "mean_probability": F.col("mean_probability"),
        "accuracy": safe_divide(tp + tn, F.col("rows")),
        "precision": F.coalesce(safe_divide(tp, tp + fp), F.lit(0.0)),
        "recall": F.coalesce(safe_divide(tp, tp + fn), F.lit(0.0)),
        "f1": F.coalesce(safe_divide(2 * tp, 2 * tp + fp + fn), F.lit(0.0)),
        "log_loss": F.col("log_loss"),
        "brier": F.col("brier"),
        "areaUnderROC": F.col("auc"),
        "average_precision": F.col("ap"),
    }
    joined = join_groups(basic, ranked, keys)
    return long_metrics(joined, keys, metrics)


def rank_metrics(rows: DataFrame, keys: Sequence[str]) -> DataFrame:
    """(keys..., auc, ap) from rows of (keys..., __y, __p): exact ROC AUC and average precision."""
    by_score = rows.groupBy(*keys, "__p").agg(F.sum("__y").alias("pos"), F.sum(1 - F.col("__y")).alias("neg"))
    group = Window.partitionBy(*keys)
    below = group.orderBy("__p").rowsBetween(Window.unboundedPreceding, -1)
    at_or_above = group.orderBy(F.desc("__p")).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    cumulated = by_score.select(
        *keys,
        "pos",
        "neg",
        F.coalesce(F.sum("neg").over(below), F.lit(0.0)).alias("neg_below"),
        F.sum("pos").over(at_or_above).alias("tp_at"),
        F.sum("neg").over(at_or_above).alias("fp_at"),
    )
    totals = cumulated.groupBy(*keys).agg(
        F.sum(F.col("pos") * (F.col("neg_below") + 0.5 * F.col("neg"))).alias("u"),
        F.sum(F.col("pos") * safe_divide(F.col("tp_at"), F.col("tp_at") + F.col("fp_at"))).alias("ap_sum"),
        F.sum("pos").alias("p_total"),
        F.sum("neg").alias("n_total"),
    )
    one_class = (F.col("p_total") == 0) | (F.col("n_total") == 0)
    return totals.select(
        *keys,
        F.when(one_class, F.lit(None))
        .otherwise(safe_divide(F.col("u"), F.col("p_total") * F.col("n_total")))
        .alias("auc"),
        F.when(one_class, F.lit(None)).otherwise(safe_divide(F.col("ap_sum"), F.col("p_total"))).alias("ap"),
    )
