"""Multiclass classification metrics in Spark, per group.

Classes are indices 0..K-1 (the label as a double); ``probabilities`` holds the K class
probabilities as an array, index = class. Macro averages run over every class seen in the
labels or the predictions of the group, as scikit-learn's ``average='macro'`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops_spark.metrics.frames import clipped, join_groups, long_metrics, require, safe_divide

MULTICLASS_METRICS = (
    "rows",
    "accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "weighted_f1",
    "log_loss",
    "classes",
)


def multiclass_metrics(
    df: DataFrame,
    label: str,
    group_cols: Sequence[str] = (),
    probabilities: str | None = "probabilities",
    prediction: str = "prediction",
) -> DataFrame:
    """Accuracy, macro precision / recall / F1, support-weighted F1 and (with
    ``probabilities``) log loss per group, in long format."""
    require(
        df,
        "labelled predictions",
        [label, prediction, *group_cols, *([probabilities] if probabilities else [])],
    )
    keys = list(group_cols)
    rows = df.where(F.col(label).isNotNull()).select(
        *keys,
        F.col(label).cast("int").alias("__y"),
        F.col(prediction).cast("int").alias("__yhat"),
        *(
            [
                F.element_at(F.col(probabilities), F.col(label).cast("int") + 1)
                .cast("double")
                .alias("__p_true")
            ]
            if probabilities
            else []
        ),
    )
    counts = rows.groupBy(*keys, "__y", "__yhat").agg(F.count(F.lit(1)).alias("n"))
    tp = (
        counts.where(F.col("__y") == F.col("__yhat"))
        .groupBy(*keys, F.col("__y").alias("__c"))
        .agg(F.sum("n").alias("tp"))
    )
    actual = counts.groupBy(*keys, F.col("__y").alias("__c")).agg(F.sum("n").alias("support"))
    predicted = counts.groupBy(*keys, F.col("__yhat").alias("__c")).agg(F.sum("n").alias("predicted"))
    per_class = join_groups(
        join_groups(actual, predicted, [*keys, "__c"], "full"), tp, [*keys, "__c"], "left"
    )
    per_class = per_class.fillna(0, ["tp", "support", "predicted"])
    t, s, pr = F.col("tp"), F.col("support"), F.col("predicted")
    scored = per_class.select(
        *keys,
        s.alias("support"),
        t.alias("tp"),
        F.coalesce(safe_divide(t, pr), F.lit(0.0)).alias("precision"),
        F.coalesce(safe_divide(t, s), F.lit(0.0)).alias("recall"),
        F.coalesce(safe_divide(2 * t, s + pr), F.lit(0.0)).alias("f1"),
    )
    averaged = scored.groupBy(*keys).agg(
        F.sum("support").alias("rows"),
        F.sum("tp").alias("correct"),
        F.avg("precision").alias("macro_precision"),
        F.avg("recall").alias("macro_recall"),
        F.avg("f1").alias("macro_f1"),
        safe_divide(F.sum(F.col("f1") * F.col("support")), F.sum("support")).alias("weighted_f1"),
        F.count(F.lit(1)).alias("classes"),
    )
    metrics = {
        "rows": F.col("rows"),
        "accuracy": safe_divide(F.col("correct"), F.col("rows")),
        "macro_precision": F.col("macro_precision"),
        "macro_recall": F.col("macro_recall"),
        "macro_f1": F.col("macro_f1"),
        "weighted_f1": F.col("weighted_f1"),
        "classes": F.col("classes"),
    }
    if probabilities:
        losses = rows.groupBy(*keys).agg(
            F.avg(-F.log(clipped(F.coalesce(F.col("__p_true"), F.lit(0.0))))).alias("ll")
        )
        averaged = join_groups(averaged, losses, keys)
        metrics["log_loss"] = F.col("ll")
    return long_metrics(averaged, keys, metrics)
