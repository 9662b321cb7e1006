"""Drift and realised-quality metrics, computed in Spark on histograms.

Only small summaries reach the driver: the reference *profile* (a quantile grid and
counts per bucket for each numeric column, counts per category for each categorical
one) and the final metric rows. Current data is bucketed on the reference's grid by
executors (pyspark.ml's ``Bucketizer``: a binary search per value) and aggregated per
(group, column, bucket); every metric below is then computed from those histograms with
Spark aggregates and window functions.

Metrics per column and group (a group is e.g. model version + partition date):

* numeric: ``psi``, ``js_distance``, ``chi2``/``chi2_pvalue`` on ``bins`` reference
  quantile bins; ``ks`` and ``wasserstein`` (``wasserstein_std``: in reference standard
  deviations) on a fine grid of ``grid_size`` reference quantiles; ``null_rate``,
  ``null_rate_delta``, ``mean``.
* categorical: ``psi``, ``js_distance``, ``chi2``/``chi2_pvalue`` on the reference's most
  frequent categories (others share one bin, unseen ones get a ``__new__`` bin);
  ``new_category_rate``, ``null_rate``, ``null_rate_delta``.

Approximations (measured against scipy on exact data in tests/test_monitoring.py):

* PSI, Jensen-Shannon and chi-square are statistics *of the binned distributions*; given
  the bins they are exact. Empty bins are floored at ``PSI_EPSILON`` for PSI only.
* KS is ``max |F_ref - F_cur|`` over the grid points, where both empirical CDFs are exact
  (buckets are right-closed: ``(g[k-1], g[k]]``). The true supremum can fall inside a
  bucket, so the reported value is a lower bound whose error is at most the largest mass
  either sample has inside one bucket: about ``1/grid_size`` for the reference, and zero
  for a discrete column whose values are grid points (e.g. hour of day).
* Wasserstein-1 places each bucket's mass at the mean of that sample's values in the
  bucket and integrates ``|F_ref - F_cur|`` between those atoms exactly. The error is at
  most the sum over buckets of (mass moved) x (bucket width), zero for discrete columns.
* Spark's approximate quantiles (``relative_error``) only move the grid's edges; the
  counts at whatever edges result are exact, so they cost resolution, never correctness.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.functions import pandas_udf

from mlops_spark.errors import JobFailed
from mlops_spark.monitoring.frames import (
    BIN,
    BUCKET,
    COLUMN,
    METRIC,
    NEW,
    PSI_EPSILON,
    TOTAL,
    VALUE,
    N,
    safe_divide,
)
from mlops_spark.monitoring.histograms import categorical_histograms, numeric_histograms, rolling_histograms
from mlops_spark.monitoring.profile import ReferenceProfile


def _long(group_cols: Sequence[str], metrics: Mapping[str, Column]) -> list[Column]:
    pairs = F.array(
        *[F.struct(F.lit(k).alias(METRIC), v.cast("double").alias(VALUE)) for k, v in metrics.items()]
    )
    return [*[F.col(c) for c in group_cols], F.col(COLUMN), F.inline(pairs)]


def binned_divergences(bins: DataFrame, group_cols: Sequence[str], epsilon: float = PSI_EPSILON) -> DataFrame:
    """PSI, Jensen-Shannon distance (base 2) and the chi-square test of homogeneity.

    ``bins`` holds (group..., column, bin, ref_n, cur_n) with every bin of the reference
    present; the result is long: (group..., column, metric, value).
    """
    keys = [*group_cols, COLUMN]
    w = Window.partitionBy(*keys)
    nr, nc = F.sum("ref_n").over(w), F.sum("cur_n").over(w)
    pr, pc = safe_divide(F.col("ref_n"), nr), safe_divide(F.col("cur_n"), nc)
    pr_f, pc_f = F.greatest(pr, F.lit(epsilon)), F.greatest(pc, F.lit(epsilon))
    m = (pr + pc) / 2
    col_total = F.col("ref_n") + F.col("cur_n")
    er, ec = safe_divide(nr * col_total, nr + nc), safe_divide(nc * col_total, nr + nc)
    terms = bins.select(
        *keys,
        nc.alias("__nc"),
        ((pc_f - pr_f) * F.log(pc_f / pr_f)).alias("__psi"),
        (
            0.5 * F.when(pr > 0, pr * F.log2(safe_divide(pr, m))).otherwise(0.0)
            + 0.5 * F.when(pc > 0, pc * F.log2(safe_divide(pc, m))).otherwise(0.0)
        ).alias("__js"),
        F.when(
            col_total > 0,
            safe_divide(F.pow(F.col("ref_n") - er, 2), er) + safe_divide(F.pow(F.col("cur_n") - ec, 2), ec),
        )
        .otherwise(0.0)
        .alias("__chi"),
        F.when(col_total > 0, 1).otherwise(0).alias("__nonzero"),
    ).where(F.col("__nc") > 0)
    sums = terms.groupBy(*keys).agg(
        F.sum("__psi").alias("psi"),
        F.sqrt(F.greatest(F.sum("__js"), F.lit(0.0))).alias("js_distance"),
        F.sum("__chi").alias("chi2"),
        (F.sum("__nonzero") - 1).alias("dof"),
    )
    return sums.select(
        *_long(
            group_cols,
            {
                "psi": F.col("psi"),
                "js_distance": F.col("js_distance"),
                "chi2": F.col("chi2"),
                "chi2_pvalue": F.when(F.col("dof") <= 0, F.lit(1.0)).otherwise(
                    chi2_survival(F.col("chi2"), F.col("dof").cast("double"))
                ),
            },
        )
    )


@pandas_udf(T.DoubleType())  # type: ignore[call-overload,untyped-decorator]
def chi2_survival(statistic: pd.Series, dof: pd.Series) -> pd.Series:
    """P(X >= statistic) for a chi-square variable: the test's p-value (Arrow batches)."""
    from scipy.stats import chi2

    return pd.Series(chi2.sf(statistic.to_numpy(float), dof.to_numpy(float)))


def _numeric_reference_frame(spark: SparkSession, profile: ReferenceProfile) -> DataFrame:
    rows = []
    for p in profile.numeric.values():
        for k, (n, total) in enumerate(zip(p.counts, p.totals, strict=True)):
            rows.append((p.column, k, p.coarse[k], n, total))
    schema = "column string, bucket int, coarse int, ref_n long, ref_total double"
    return spark.createDataFrame(rows, schema)


def _stats_frame(spark: SparkSession, profile: ReferenceProfile) -> DataFrame:
    rows: list[tuple[str, float, float | None, int, int]] = [
        (p.column, p.null_rate, p.std, p.nulls, p.rows + p.nulls) for p in profile.numeric.values()
    ]
    rows += [(p.column, p.null_rate, None, p.nulls, p.rows + p.nulls) for p in profile.categorical.values()]
    schema = "column string, ref_null_rate double, ref_std double, ref_nulls long, ref_all long"
    return spark.createDataFrame(rows, schema)


def null_rates(
    hist: DataFrame, profile: ReferenceProfile, group_cols: Sequence[str], key: str, leave_out: bool = False
) -> DataFrame:
    """null_rate of the current data and its absolute change from the reference (from the
    rest of the reference with ``leave_out``)."""
    keys = [*group_cols, COLUMN]
    rates = hist.groupBy(*keys).agg(
        F.sum(F.when(F.col(key).isNull(), F.col(N)).otherwise(0)).alias("cur_nulls"),
        F.sum(N).alias("cur_all"),
    )
    stats = F.broadcast(_stats_frame(hist.sparkSession, profile))
    joined = rates.join(stats, COLUMN)
    ref_rate = (
        safe_divide(F.col("ref_nulls") - F.col("cur_nulls"), F.col("ref_all") - F.col("cur_all"))
        if leave_out
        else F.col("ref_null_rate")
    )
    rate = safe_divide(F.col("cur_nulls"), F.col("cur_all"))
    return joined.select(*_long(group_cols, {"null_rate": rate, "null_rate_delta": F.abs(rate - ref_rate)}))


def numeric_drift(
    hist: DataFrame, profile: ReferenceProfile, group_cols: Sequence[str], leave_out: bool = False
) -> DataFrame:
    """Every numeric drift metric from ``numeric_histograms`` output (long format).

    ``leave_out``: the current rows are part of the reference (calibration), so each group is
    compared with the reference *without* its own rows (its counts subtracted bucket by bucket)."""
    spark = hist.sparkSession
    keys = [*group_cols, COLUMN]
    ref = F.broadcast(_numeric_reference_frame(spark, profile))
    present = hist.where(F.col(BUCKET).isNotNull())
    groups = hist.select(*keys).distinct()
    grid = (
        groups.join(ref, COLUMN)
        .join(
            present.select(*keys, BUCKET, F.col(N).alias("cur_n"), F.col(TOTAL).alias("cur_total")),
            [*keys, BUCKET],
            "left",
        )
        .fillna(0, ["cur_n"])
        .fillna(0.0, ["cur_total"])
    )
    if leave_out:
        grid = grid.withColumn("ref_n", F.col("ref_n") - F.col("cur_n")).withColumn(
            "ref_total", F.col("ref_total") - F.col("cur_total")
        )
    w = Window.partitionBy(*keys)
    cum = w.orderBy(BUCKET).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    cdf = grid.select(
        *keys,
        F.abs(
            safe_divide(F.sum("ref_n").over(cum), F.sum("ref_n").over(w))
            - safe_divide(F.sum("cur_n").over(cum), F.sum("cur_n").over(w))
        ).alias("gap"),
        F.sum("cur_n").over(w).alias("cur_rows"),
        F.sum("cur_total").over(w).alias("cur_sum"),
    )
    ks = cdf.groupBy(*keys).agg(
        F.max("gap").alias("ks"), F.first("cur_rows").alias("rows"), F.first("cur_sum").alias("sum")
    )

    atoms = (
        grid.where(F.col("ref_n") > 0)
        .select(
            *keys,
            safe_divide(F.col("ref_total"), F.col("ref_n")).alias("pos"),
            F.col("ref_n").cast("double").alias("rn"),
            F.lit(0.0).alias("cn"),
        )
        .unionByName(
            grid.where(F.col("cur_n") > 0).select(
                *keys,
                safe_divide(F.col("cur_total"), F.col("cur_n")).alias("pos"),
                F.lit(0.0).alias("rn"),
                F.col("cur_n").cast("double").alias("cn"),
            )
        )
    )
    ordered = w.orderBy("pos", "rn").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    steps = atoms.select(
        *keys,
        F.abs(
            safe_divide(F.sum("rn").over(ordered), F.sum("rn").over(w))
            - safe_divide(F.sum("cn").over(ordered), F.sum("cn").over(w))
        ).alias("gap"),
        (F.lead("pos").over(w.orderBy("pos", "rn")) - F.col("pos")).alias("width"),
    )
    wasserstein = steps.groupBy(*keys).agg(
        F.sum(F.coalesce(F.col("gap") * F.col("width"), F.lit(0.0))).alias("w")
    )
    stats = F.broadcast(_stats_frame(spark, profile))
    shape = ks.join(wasserstein, keys).join(stats, COLUMN).where(F.col("rows") > 0)
    shape_long = shape.select(
        *_long(
            group_cols,
            {
                "ks": F.col("ks"),
                "wasserstein": F.col("w"),
                "wasserstein_std": F.when(F.col("ref_std") > 0, safe_divide(F.col("w"), F.col("ref_std"))),
                "mean": safe_divide(F.col("sum"), F.col("rows")),
                "rows": F.col("rows"),
            },
        )
    )
    coarse = grid.groupBy(*keys, F.col("coarse").alias(BIN)).agg(
        F.sum("ref_n").alias("ref_n"), F.sum("cur_n").alias("cur_n")
    )
    return shape_long.unionByName(binned_divergences(coarse, group_cols)).unionByName(
        null_rates(hist, profile, group_cols, BUCKET, leave_out)
    )


def _categorical_reference_frame(spark: SparkSession, profile: ReferenceProfile) -> DataFrame:
    rows = [
        (p.column, cat, p.bin_of(cat), n) for p in profile.categorical.values() for cat, n in p.counts.items()
    ]
    return spark.createDataFrame(rows, "column string, category string, bin string, ref_n long")


def categorical_drift(
    hist: DataFrame, profile: ReferenceProfile, group_cols: Sequence[str], leave_out: bool = False
) -> DataFrame:
    """Every categorical drift metric from ``categorical_histograms`` output (long format);
    ``leave_out`` as in `numeric_drift`."""
    spark = hist.sparkSession
    keys = [*group_cols, COLUMN]
    ref = _categorical_reference_frame(spark, profile)
    ref_bins = F.broadcast(ref.groupBy(COLUMN, BIN).agg(F.sum("ref_n").alias("ref_n")))
    present = hist.where(F.col("category").isNotNull()).join(
        F.broadcast(ref.select(COLUMN, "category", F.col(BIN).alias("__bin"))), [COLUMN, "category"], "left"
    )
    cur_bins = present.groupBy(*keys, F.coalesce(F.col("__bin"), F.lit(NEW)).alias(BIN)).agg(
        F.sum(N).alias("cur_n")
    )
    groups = hist.select(*keys).distinct()
    bins = groups.join(ref_bins, COLUMN).join(cur_bins, [*keys, BIN], "full").fillna(0, ["ref_n", "cur_n"])
    if leave_out:
        bins = bins.withColumn("ref_n", F.greatest(F.col("ref_n") - F.col("cur_n"), F.lit(0)))
    new_rate = present.groupBy(*keys).agg(
        safe_divide(F.sum(F.when(F.col("__bin").isNull(), F.col(N)).otherwise(0)), F.sum(N)).alias("new"),
        F.sum(N).alias("rows"),
    )
    return (
        new_rate.select(*_long(group_cols, {"new_category_rate": F.col("new"), "rows": F.col("rows")}))
        .unionByName(binned_divergences(bins, group_cols))
        .unionByName(
            null_rates(hist.withColumnRenamed("category", "__cat"), profile, group_cols, "__cat", leave_out)
        )
    )


def drift_metrics(
    current: DataFrame,
    profile: ReferenceProfile,
    group_cols: Sequence[str],
    date_column: str | None = None,
    windows: Sequence[int] = (),
    window_ends: Sequence[dt.date] = (),
    leave_out: bool = False,
) -> DataFrame:
    """Drift of every profiled column, per group and (optionally) per rolling window.

    Result: (group..., window_days, column, metric, value); ``window_days`` is 1 for each
    group on its own and N for the window of N days ending at the group's date.
    ``leave_out``: ``current`` is the reference itself, each group measured against the rest.
    """
    out: DataFrame | None = None
    numeric_hist = categorical_hist = None
    if profile.numeric:
        numeric_hist = numeric_histograms(
            current, {c: p.edges for c, p in profile.numeric.items()}, group_cols
        )
    if profile.categorical:
        categorical_hist = categorical_histograms(current, list(profile.categorical), group_cols)
    plans: list[tuple[int, DataFrame | None, DataFrame | None]] = [(1, numeric_hist, categorical_hist)]
    for days in windows:
        if date_column is None or not window_ends:
            break
        plans.append(
            (
                days,
                rolling_histograms(numeric_hist, date_column, days, window_ends)
                if numeric_hist is not None
                else None,
                rolling_histograms(categorical_hist, date_column, days, window_ends)
                if categorical_hist is not None
                else None,
            )
        )
    for days, nh, ch in plans:
        parts = []
        if nh is not None:
            parts.append(numeric_drift(nh, profile, group_cols, leave_out))
        if ch is not None:
            parts.append(categorical_drift(ch, profile, group_cols, leave_out))
        for part in parts:
            tagged = part.withColumn("window_days", F.lit(days))
            out = tagged if out is None else out.unionByName(tagged)
    if out is None:
        raise JobFailed(
            "monitoring: no column to monitor (monitoring.columns and the model's inputs are empty)"
        )
    return out


def pooled_bins(current: DataFrame, profile: ReferenceProfile, group_cols: Sequence[str]) -> DataFrame:
    """Reference and current counts per coarse bin / category bin, pooled over ``current``
    (for the report's reference-vs-current histograms): (group..., column, bin, ref_n, cur_n)."""
    spark = current.sparkSession
    keys = [*group_cols, COLUMN]
    parts: list[DataFrame] = []
    if profile.numeric:
        hist = numeric_histograms(current, {c: p.edges for c, p in profile.numeric.items()}, group_cols)
        ref = _numeric_reference_frame(spark, profile)
        cur = hist.where(F.col(BUCKET).isNotNull()).join(
            F.broadcast(ref.select(COLUMN, BUCKET, "coarse")), [COLUMN, BUCKET]
        )
        cur_bins = cur.groupBy(*keys, F.col("coarse").cast("string").alias(BIN)).agg(F.sum(N).alias("cur_n"))
        ref_bins = ref.groupBy(COLUMN, F.col("coarse").cast("string").alias(BIN)).agg(
            F.sum("ref_n").alias("ref_n")
        )
        parts.append(
            hist.select(*keys)
            .distinct()
            .join(ref_bins, COLUMN)
            .join(cur_bins, [*keys, BIN], "left")
            .fillna(0, ["cur_n"])
        )
    if profile.categorical:
        hist = categorical_histograms(current, list(profile.categorical), group_cols)
        ref = _categorical_reference_frame(spark, profile)
        present = hist.where(F.col("category").isNotNull()).join(
            F.broadcast(ref.select(COLUMN, "category", F.col(BIN).alias("__bin"))),
            [COLUMN, "category"],
            "left",
        )
        cur_bins = present.groupBy(*keys, F.coalesce(F.col("__bin"), F.lit(NEW)).alias(BIN)).agg(
            F.sum(N).alias("cur_n")
        )
        ref_bins = ref.groupBy(COLUMN, BIN).agg(F.sum("ref_n").alias("ref_n"))
        parts.append(
            hist.select(*keys)
            .distinct()
            .join(ref_bins, COLUMN)
            .join(cur_bins, [*keys, BIN], "full")
            .fillna(0, ["ref_n", "cur_n"])
        )
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out
