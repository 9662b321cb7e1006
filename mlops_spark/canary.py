"""Comparing @challenger with @champion: pure metrics, no reads or writes.

* Canary (shadow): the two models' predictions of the same entities compared row by row
  (agreement, probability shift, exact two-sample KS); the monitor and retrain jobs score
  the shadow partitions and feed these numbers to the report and the promotion decision.
* A/B: the arms of `mlops_spark.scoring.ab` (disjoint entities, real predictions) compared
  on realised quality with a significance test and a confidence interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.functions import pandas_udf

from mlops_spark.metrics import binary_metrics
from mlops_spark.monitoring.frames import COLUMN, METRIC, SLICE, VALUE, safe_divide
from mlops_spark.scoring.ab import ARM, CHALLENGER_ARM, CHAMPION_ARM


def two_sample_ks(samples: DataFrame, group_cols: Sequence[str], value: str, sample: str) -> DataFrame:
    """Exact two-sample Kolmogorov-Smirnov statistic per group: ``sample`` is 0 or 1.

    Counts per distinct value, cumulated with a window: exact like scipy's ks_2samp,
    and only the per-value counts are shuffled.
    """
    keys = list(group_cols)
    counts = samples.groupBy(*keys, value).agg(
        F.sum(F.when(F.col(sample) == 0, 1).otherwise(0)).alias("a"),
        F.sum(F.when(F.col(sample) == 1, 1).otherwise(0)).alias("b"),
    )
    w = Window.partitionBy(*keys)
    cum = w.orderBy(value).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    gaps = counts.select(
        *keys,
        F.abs(
            safe_divide(F.sum("a").over(cum), F.sum("a").over(w))
            - safe_divide(F.sum("b").over(cum), F.sum("b").over(w))
        ).alias("gap"),
    )
    return gaps.groupBy(*keys).agg(F.max("gap").alias("ks"))


def agreement_metrics(
    champion: DataFrame,
    challenger: DataFrame,
    entity_id: str,
    group_cols: Sequence[str],
    classification: bool,
) -> DataFrame:
    """Row-by-row comparison of two models' predictions of the same entities (long format,
    ``column`` = the compared prediction column)."""
    keys = list(group_cols)
    score = "probability" if classification else "prediction"
    a = champion.select(entity_id, *keys, F.col(score).alias("__a"), F.col("prediction").alias("__ya"))
    b = challenger.select(entity_id, *keys, F.col(score).alias("__b"), F.col("prediction").alias("__yb"))
    paired = a.join(b, [entity_id, *keys])
    agg = paired.groupBy(*keys).agg(
        F.count(F.lit(1)).alias("rows"),
        F.avg((F.col("__ya") == F.col("__yb")).cast("double")).alias("agreement"),
        F.avg(F.abs(F.col("__b") - F.col("__a"))).alias("mean_abs_diff"),
        F.avg(F.col("__b") - F.col("__a")).alias("mean_shift"),
        # Pearson correlation, null (not an ANSI error) when either side is constant
        safe_divide(F.covar_pop("__a", "__b"), F.stddev_pop("__a") * F.stddev_pop("__b")).alias(
            "correlation"
        ),
        (F.avg("__yb") - F.avg("__ya")).alias("predicted_rate_diff"),
    )
    samples = paired.select(*keys, F.col("__a").alias("__v"), F.lit(0).alias("__s")).unionByName(
        paired.select(*keys, F.col("__b").alias("__v"), F.lit(1).alias("__s"))
    )
    ks = two_sample_ks(samples, keys, "__v", "__s")
    names = ["rows", "mean_abs_diff", "mean_shift", "correlation", "ks"]
    if classification:
        names += ["agreement", "predicted_rate_diff"]
    pairs = F.array(*[F.struct(F.lit(n).alias(METRIC), F.col(n).cast("double").alias(VALUE)) for n in names])
    return (
        (agg.join(ks, keys) if keys else agg.crossJoin(ks))
        .select(*keys, F.lit(score).alias(COLUMN), F.inline(pairs))
        .where(F.col(VALUE).isNotNull() & ~F.isnan(VALUE))
    )


# --------------------------------------------------------------------------- A/B


@pandas_udf(T.DoubleType())  # type: ignore[call-overload,untyped-decorator]
def _two_sided_p(z: pd.Series) -> pd.Series:
    from scipy.stats import norm

    return pd.Series(2 * norm.sf(z.abs().to_numpy(float)))


def ab_comparison(
    labelled: DataFrame, label: str, group_cols: Sequence[str], confidence: float = 0.95
) -> DataFrame:
    """Realised quality per arm and the challenger-minus-champion difference with a
    two-sided test and a ``confidence`` interval (long format, slice 'arm=...' and
    'challenger-champion').

    ROC AUC: standard errors of Hanley & McNeil (1982) for independent samples (the arms
    hold disjoint entities). Accuracy: two-proportion z-test (pooled) and Wald interval.
    """
    from scipy.stats import norm

    keys = list(group_cols)
    per_arm = binary_metrics(labelled.where(F.col(ARM).isNotNull()), label, [*keys, ARM]).select(
        *keys, F.concat(F.lit(f"{ARM}="), F.col(ARM)).alias(SLICE), METRIC, VALUE
    )
    wide = (
        per_arm.where(F.col(METRIC).isin("rows", "positive_rate", "accuracy", "areaUnderROC"))
        .withColumn("__key", F.concat_ws("_", F.regexp_replace(SLICE, "arm=", ""), F.col(METRIC)))
        .groupBy(*keys)
        .pivot(
            "__key",
            [
                f"{arm}_{m}"
                for arm in (CHAMPION_ARM, CHALLENGER_ARM)
                for m in ("rows", "positive_rate", "accuracy", "areaUnderROC")
            ],
        )
        .agg(F.first(VALUE))
    )
    z_crit = float(norm.ppf(0.5 + confidence / 2))

    def auc_var(arm: str) -> Column:
        a = F.col(f"{arm}_areaUnderROC")
        pos = F.col(f"{arm}_rows") * F.col(f"{arm}_positive_rate")
        neg = F.col(f"{arm}_rows") - pos
        q1, q2 = safe_divide(a, 2 - a), safe_divide(2 * a * a, 1 + a)
        return safe_divide(a * (1 - a) + (pos - 1) * (q1 - a * a) + (neg - 1) * (q2 - a * a), pos * neg)

    auc_diff = F.col(f"{CHALLENGER_ARM}_areaUnderROC") - F.col(f"{CHAMPION_ARM}_areaUnderROC")
    auc_se = F.sqrt(auc_var(CHAMPION_ARM) + auc_var(CHALLENGER_ARM))
    n1, n2 = F.col(f"{CHAMPION_ARM}_rows"), F.col(f"{CHALLENGER_ARM}_rows")
    p1, p2 = F.col(f"{CHAMPION_ARM}_accuracy"), F.col(f"{CHALLENGER_ARM}_accuracy")
    pooled = safe_divide(p1 * n1 + p2 * n2, n1 + n2)
    acc_diff = p2 - p1
    acc_se_pooled = F.sqrt(
        pooled * (1 - pooled) * (safe_divide(F.lit(1.0), n1) + safe_divide(F.lit(1.0), n2))
    )
    acc_se = F.sqrt(safe_divide(p1 * (1 - p1), n1) + safe_divide(p2 * (1 - p2), n2))
    metrics = {
        "auc_diff": auc_diff,
        "auc_diff_low": auc_diff - z_crit * auc_se,
        "auc_diff_high": auc_diff + z_crit * auc_se,
        "auc_diff_pvalue": _two_sided_p(safe_divide(auc_diff, auc_se)),
        "accuracy_diff": acc_diff,
        "accuracy_diff_low": acc_diff - z_crit * acc_se,
        "accuracy_diff_high": acc_diff + z_crit * acc_se,
        "accuracy_diff_pvalue": _two_sided_p(safe_divide(acc_diff, acc_se_pooled)),
    }
    pairs = F.array(
        *[F.struct(F.lit(k).alias(METRIC), v.cast("double").alias(VALUE)) for k, v in metrics.items()]
    )
    diff = wide.select(*keys, F.lit(f"{CHALLENGER_ARM}-{CHAMPION_ARM}").alias(SLICE), F.inline(pairs)).where(
        F.col(VALUE).isNotNull() & ~F.isnan(VALUE)
    )
    return per_arm.unionByName(diff)
