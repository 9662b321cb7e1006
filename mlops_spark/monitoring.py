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
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
from pyspark.ml.feature import Bucketizer
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.config import MetricThreshold
from mlops_spark.errors import JobFailed, MissingColumnError

COLUMN = "column"
BUCKET = "bucket"
BIN = "bin"
METRIC = "metric"
VALUE = "value"
SLICE = "slice"
ALL = "all"
OTHER = "__other__"
NEW = "__new__"
PSI_EPSILON = 1e-4
"""Probability floor for PSI's logarithm (bins empty on one side would make it infinite)."""

_N, _TOTAL = "n", "total"


# --------------------------------------------------------------------------- reference profile


@dataclass(frozen=True)
class NumericProfile:
    """A numeric column of the reference: its quantile grid and counts per grid bucket.

    Bucket 0 is ``x <= edges[0]`` (the minimum), bucket k is ``edges[k-1] < x <= edges[k]``,
    the last bucket ``x > edges[-1]``. ``coarse`` maps each bucket to its PSI/JS/chi2 bin.
    """

    column: str
    edges: tuple[float, ...]
    coarse: tuple[int, ...]
    cuts: tuple[float, ...]
    counts: tuple[int, ...]
    totals: tuple[float, ...]
    rows: int
    nulls: int
    mean: float
    std: float

    @property
    def null_rate(self) -> float:
        return self.nulls / (self.rows + self.nulls) if self.rows + self.nulls else 0.0

    def bin_labels(self) -> list[str]:
        """Human labels of the coarse bins, e.g. '(-inf, 3.2]'."""
        bounds = ["-inf", *[f"{c:.4g}" for c in self.cuts], "inf"]
        return [f"({bounds[i]}, {bounds[i + 1]}]" for i in range(len(bounds) - 1)]


@dataclass(frozen=True)
class CategoricalProfile:
    """A categorical column of the reference: the count of every category it has."""

    column: str
    counts: dict[str, int]
    bins: tuple[str, ...]
    nulls: int

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    @property
    def null_rate(self) -> float:
        total = self.rows + self.nulls
        return self.nulls / total if total else 0.0

    def bin_of(self, category: str) -> str:
        return category if category in self.bins else OTHER


@dataclass(frozen=True)
class ReferenceProfile:
    numeric: dict[str, NumericProfile] = field(default_factory=dict)
    categorical: dict[str, CategoricalProfile] = field(default_factory=dict)
    description: str = "reference"
    rows: int = 0


def profile_reference(
    df: DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    bins: int = 10,
    grid_size: int = 200,
    relative_error: float = 0.001,
    max_categories: int = 50,
    description: str = "reference",
) -> ReferenceProfile:
    """Summarise the reference in Spark: quantile grids, bucket counts, category counts."""
    if grid_size % bins:
        raise JobFailed(f"monitoring.grid_size ({grid_size}) must be a multiple of monitoring.bins ({bins})")
    _require(df, "reference", [*numeric, *categorical])
    # several passes (count, quantiles, histograms, moments) read it: compute it once
    cleaned = df.select(
        *[_as_double(c).alias(c) for c in numeric], *[F.col(c) for c in categorical]
    ).persist()
    try:
        return _profile(
            cleaned, numeric, categorical, bins, grid_size, relative_error, max_categories, description
        )
    finally:
        cleaned.unpersist()


def _profile(
    cleaned: DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    bins: int,
    grid_size: int,
    relative_error: float,
    max_categories: int,
    description: str,
) -> ReferenceProfile:
    total = cleaned.count()
    if total == 0:
        raise JobFailed(f"{description}: the reference has no rows; check monitoring.reference and its range")
    profiles: dict[str, NumericProfile] = {}
    if numeric:
        probabilities = [k / grid_size for k in range(grid_size + 1)]
        quantiles = cleaned.approxQuantile(list(numeric), probabilities, relative_error)
        step = grid_size // bins
        grids: dict[str, tuple[list[float], list[float]]] = {}
        for column, q in zip(numeric, quantiles, strict=True):
            if not q:
                continue  # only nulls: nothing to bucket, null rates still tracked below
            edges = sorted(set(q))
            cuts = sorted({q[j * step] for j in range(1, bins)} - {q[0]})
            grids[column] = (edges, cuts)
        if grids:
            hist = numeric_histograms(cleaned, {c: g[0] for c, g in grids.items()}, []).collect()
        else:
            hist = []
        moments = cleaned.select(
            *[F.avg(c).alias(f"m_{i}") for i, c in enumerate(numeric)],
            *[F.stddev_pop(c).alias(f"s_{i}") for i, c in enumerate(numeric)],
            *[F.count(c).alias(f"n_{i}") for i, c in enumerate(numeric)],
        ).first()
        assert moments is not None
        for i, column in enumerate(numeric):
            if column not in grids:
                continue
            edges, cuts = grids[column]
            counts = [0] * (len(edges) + 1)
            totals = [0.0] * (len(edges) + 1)
            for row in hist:
                if row[COLUMN] == column and row[BUCKET] is not None:
                    counts[row[BUCKET]] = int(row[_N])
                    totals[row[BUCKET]] = float(row[_TOTAL] or 0.0)
            uppers = [*edges, math.inf]
            coarse = [sum(1 for c in cuts if c < upper) for upper in uppers]
            rows = int(moments[f"n_{i}"])
            profiles[column] = NumericProfile(
                column=column,
                edges=tuple(edges),
                coarse=tuple(coarse),
                cuts=tuple(cuts),
                counts=tuple(counts),
                totals=tuple(totals),
                rows=rows,
                nulls=total - rows,
                mean=float(moments[f"m_{i}"]),
                std=float(moments[f"s_{i}"] or 0.0),
            )
    cats: dict[str, CategoricalProfile] = {}
    if categorical:
        for row_column, cat_rows in _group_rows(
            categorical_histograms(cleaned, categorical, []).collect()
        ).items():
            seen = {str(r["category"]): int(r[_N]) for r in cat_rows if r["category"] is not None}
            nulls = sum(int(r[_N]) for r in cat_rows if r["category"] is None)
            top = sorted(seen, key=lambda k: (-seen[k], k))[:max_categories]
            cats[row_column] = CategoricalProfile(row_column, seen, tuple(top), nulls)
        for column in categorical:
            cats.setdefault(column, CategoricalProfile(column, {}, (), total))
    return ReferenceProfile(profiles, cats, description, total)


def _group_rows(rows: Sequence[T.Row]) -> dict[str, list[T.Row]]:
    out: dict[str, list[T.Row]] = {}
    for r in rows:
        out.setdefault(r[COLUMN], []).append(r)
    return out


# --------------------------------------------------------------------------- histograms


def _as_double(column: str) -> Column:
    value = F.col(column).cast("double")
    return F.when(F.isnan(value), F.lit(None).cast("double")).otherwise(value)


def _splits(edges: Sequence[float]) -> list[float]:
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
    _require(df, "current data", [*group_cols, *columns])
    values = [f"__v{i}" for i in range(len(columns))]
    buckets = [f"__b{i}" for i in range(len(columns))]
    clean = df.select(*group_cols, *[_as_double(c).alias(v) for c, v in zip(columns, values, strict=True)])
    bucketed = Bucketizer(
        splitsArray=[_splits(edges[c]) for c in columns],
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
        F.count(F.lit(1)).alias(_N), F.sum(VALUE).alias(_TOTAL)
    )


def categorical_histograms(df: DataFrame, columns: Sequence[str], group_cols: Sequence[str]) -> DataFrame:
    """(group..., column, category, n); values as strings, ``category`` null for nulls."""
    _require(df, "current data", [*group_cols, *columns])
    entries = F.array(
        *[F.struct(F.lit(c).alias(COLUMN), F.col(c).cast("string").alias("category")) for c in columns]
    )
    long = df.select(*group_cols, F.inline(entries))
    return long.groupBy(*group_cols, COLUMN, "category").agg(F.count(F.lit(1)).alias(_N))


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
    others = [c for c in hist.columns if c not in {date_column, _N, _TOTAL}]
    aggs = [F.sum(_N).alias(_N)]
    if _TOTAL in hist.columns:
        aggs.append(F.sum(_TOTAL).alias(_TOTAL))
    return joined.groupBy(F.col("__end").alias(date_column), *others).agg(*aggs).select(*hist.columns)


# --------------------------------------------------------------------------- drift metrics


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


@F.pandas_udf(T.DoubleType())  # type: ignore[call-overload]
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
    rows: list[tuple[str, float, float | None]] = [
        (p.column, p.null_rate, p.std) for p in profile.numeric.values()
    ]
    rows += [(p.column, p.null_rate, None) for p in profile.categorical.values()]
    return spark.createDataFrame(rows, "column string, ref_null_rate double, ref_std double")


def null_rates(hist: DataFrame, profile: ReferenceProfile, group_cols: Sequence[str], key: str) -> DataFrame:
    """null_rate of the current data and its absolute change from the reference."""
    keys = [*group_cols, COLUMN]
    rates = hist.groupBy(*keys).agg(
        safe_divide(F.sum(F.when(F.col(key).isNull(), F.col(_N)).otherwise(0)), F.sum(_N)).alias("rate")
    )
    stats = F.broadcast(_stats_frame(hist.sparkSession, profile))
    joined = rates.join(stats, COLUMN)
    return joined.select(
        *_long(
            group_cols,
            {
                "null_rate": F.col("rate"),
                "null_rate_delta": F.abs(F.col("rate") - F.col("ref_null_rate")),
            },
        )
    )


def numeric_drift(hist: DataFrame, profile: ReferenceProfile, group_cols: Sequence[str]) -> DataFrame:
    """Every numeric drift metric from ``numeric_histograms`` output (long format)."""
    spark = hist.sparkSession
    keys = [*group_cols, COLUMN]
    ref = F.broadcast(_numeric_reference_frame(spark, profile))
    present = hist.where(F.col(BUCKET).isNotNull())
    groups = hist.select(*keys).distinct()
    grid = (
        groups.join(ref, COLUMN)
        .join(
            present.select(*keys, BUCKET, F.col(_N).alias("cur_n"), F.col(_TOTAL).alias("cur_total")),
            [*keys, BUCKET],
            "left",
        )
        .fillna(0, ["cur_n"])
        .fillna(0.0, ["cur_total"])
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
        null_rates(hist, profile, group_cols, BUCKET)
    )


def _categorical_reference_frame(spark: SparkSession, profile: ReferenceProfile) -> DataFrame:
    rows = [
        (p.column, cat, p.bin_of(cat), n) for p in profile.categorical.values() for cat, n in p.counts.items()
    ]
    return spark.createDataFrame(rows, "column string, category string, bin string, ref_n long")


def categorical_drift(hist: DataFrame, profile: ReferenceProfile, group_cols: Sequence[str]) -> DataFrame:
    """Every categorical drift metric from ``categorical_histograms`` output (long format)."""
    spark = hist.sparkSession
    keys = [*group_cols, COLUMN]
    ref = _categorical_reference_frame(spark, profile)
    ref_bins = F.broadcast(ref.groupBy(COLUMN, BIN).agg(F.sum("ref_n").alias("ref_n")))
    present = hist.where(F.col("category").isNotNull()).join(
        F.broadcast(ref.select(COLUMN, "category", F.col(BIN).alias("__bin"))), [COLUMN, "category"], "left"
    )
    cur_bins = present.groupBy(*keys, F.coalesce(F.col("__bin"), F.lit(NEW)).alias(BIN)).agg(
        F.sum(_N).alias("cur_n")
    )
    groups = hist.select(*keys).distinct()
    bins = groups.join(ref_bins, COLUMN).join(cur_bins, [*keys, BIN], "full").fillna(0, ["ref_n", "cur_n"])
    new_rate = present.groupBy(*keys).agg(
        safe_divide(F.sum(F.when(F.col("__bin").isNull(), F.col(_N)).otherwise(0)), F.sum(_N)).alias("new"),
        F.sum(_N).alias("rows"),
    )
    return (
        new_rate.select(*_long(group_cols, {"new_category_rate": F.col("new"), "rows": F.col("rows")}))
        .unionByName(binned_divergences(bins, group_cols))
        .unionByName(null_rates(hist.withColumnRenamed("category", "__cat"), profile, group_cols, "__cat"))
    )


def drift_metrics(
    current: DataFrame,
    profile: ReferenceProfile,
    group_cols: Sequence[str],
    date_column: str | None = None,
    windows: Sequence[int] = (),
    window_ends: Sequence[dt.date] = (),
) -> DataFrame:
    """Drift of every profiled column, per group and (optionally) per rolling window.

    Result: (group..., window_days, column, metric, value); ``window_days`` is 1 for each
    group on its own and N for the window of N days ending at the group's date.
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
            parts.append(numeric_drift(nh, profile, group_cols))
        if ch is not None:
            parts.append(categorical_drift(ch, profile, group_cols))
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
        cur_bins = cur.groupBy(*keys, F.col("coarse").cast("string").alias(BIN)).agg(F.sum(_N).alias("cur_n"))
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
            F.sum(_N).alias("cur_n")
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


# --------------------------------------------------------------------------- realised quality


def slice_labels(slices: Sequence[str]) -> Column:
    """['all', 'carrier=AA', 'origin=JFK', ...] for each row: quality is computed per label."""
    return F.array(
        F.lit(ALL),
        *[F.concat(F.lit(f"{c}="), F.coalesce(F.col(c).cast("string"), F.lit("null"))) for c in slices],
    )


_EPS = sys.float_info.epsilon  # 2.22e-16, numpy.finfo(float64).eps


def classification_quality(
    df: DataFrame,
    label: str,
    group_cols: Sequence[str],
    slices: Sequence[str] = (),
    probability: str = "probability",
    prediction: str = "prediction",
) -> DataFrame:
    """Realised metrics of labelled predictions per group and slice (long format).

    ROC AUC is exact: the Mann-Whitney statistic from counts per distinct score (ties
    count one half), computed with a window over the scores, not on the driver.
    """
    _require(df, "labelled predictions", [label, probability, prediction, *group_cols, *slices])
    keys = [*group_cols, SLICE]
    y = F.col(label).cast("double")
    p = F.col(probability).cast("double")
    rows = df.where(F.col(label).isNotNull()).select(
        *group_cols,
        y.alias("__y"),
        p.alias("__p"),
        F.col(prediction).cast("double").alias("__yhat"),
        F.explode(slice_labels(slices)).alias(SLICE),
    )
    # probabilities of exactly 0 or 1 are clipped to float64 machine epsilon, as scikit-learn does
    pc = F.greatest(F.least(F.col("__p"), F.lit(1 - _EPS)), F.lit(_EPS))
    yy, yhat = F.col("__y"), F.col("__yhat")
    basic = rows.groupBy(*keys).agg(
        F.count(F.lit(1)).alias("rows"),
        F.avg(yy).alias("positive_rate"),
        F.avg(yhat).alias("predicted_positive_rate"),
        F.avg("__p").alias("mean_probability"),
        F.sum(yhat * yy).alias("tp"),
        F.sum(yhat * (1 - yy)).alias("fp"),
        F.sum((1 - yhat) * yy).alias("fn"),
        F.sum((1 - yhat) * (1 - yy)).alias("tn"),
        F.avg(-(yy * F.log(pc) + (1 - yy) * F.log(1 - pc))).alias("log_loss"),
        F.avg(F.pow(F.col("__p") - yy, 2)).alias("brier"),
    )
    by_score = rows.groupBy(*keys, "__p").agg(F.sum(yy).alias("pos"), F.sum(1 - yy).alias("neg"))
    below = Window.partitionBy(*keys).orderBy("__p").rowsBetween(Window.unboundedPreceding, -1)
    auc = (
        by_score.withColumn("__neg_below", F.coalesce(F.sum("neg").over(below), F.lit(0.0)))
        .groupBy(*keys)
        .agg(
            safe_divide(
                F.sum(F.col("pos") * (F.col("__neg_below") + 0.5 * F.col("neg"))),
                F.sum("pos") * F.sum("neg"),
            ).alias("auc")
        )
    )
    precision = safe_divide(F.col("tp"), F.col("tp") + F.col("fp"))
    recall = safe_divide(F.col("tp"), F.col("tp") + F.col("fn"))
    metrics = {
        "rows": F.col("rows"),
        "positive_rate": F.col("positive_rate"),
        "predicted_positive_rate": F.col("predicted_positive_rate"),
        "mean_probability": F.col("mean_probability"),
        "accuracy": safe_divide(F.col("tp") + F.col("tn"), F.col("rows")),
        "precision": precision,
        "recall": recall,
        "f1": safe_divide(2 * F.col("tp"), 2 * F.col("tp") + F.col("fp") + F.col("fn")),
        "log_loss": F.col("log_loss"),
        "brier": F.col("brier"),
        "areaUnderROC": F.col("auc"),
    }
    joined = basic.join(auc, keys)
    pairs = F.array(
        *[F.struct(F.lit(k).alias(METRIC), v.cast("double").alias(VALUE)) for k, v in metrics.items()]
    )
    return joined.select(*keys, F.inline(pairs)).where(F.col(VALUE).isNotNull() & ~F.isnan(VALUE))


def regression_quality(
    df: DataFrame,
    label: str,
    group_cols: Sequence[str],
    slices: Sequence[str] = (),
    prediction: str = "prediction",
) -> DataFrame:
    """rmse, mae, bias (mean prediction - label), r2 per group and slice (long format)."""
    _require(df, "labelled predictions", [label, prediction, *group_cols, *slices])
    keys = [*group_cols, SLICE]
    rows = df.where(F.col(label).isNotNull()).select(
        *group_cols,
        F.col(label).cast("double").alias("__y"),
        F.col(prediction).cast("double").alias("__yhat"),
        F.explode(slice_labels(slices)).alias(SLICE),
    )
    err = F.col("__yhat") - F.col("__y")
    agg = rows.groupBy(*keys).agg(
        F.count(F.lit(1)).alias("rows"),
        F.sqrt(F.avg(err * err)).alias("rmse"),
        F.avg(F.abs(err)).alias("mae"),
        F.avg(err).alias("bias"),
        F.avg("__y").alias("label_mean"),
        F.sum(err * err).alias("sse"),
        F.var_pop("__y").alias("var"),
    )
    metrics = {
        "rows": F.col("rows"),
        "rmse": F.col("rmse"),
        "mae": F.col("mae"),
        "bias": F.col("bias"),
        "label_mean": F.col("label_mean"),
        "r2": F.when(F.col("var") > 0, 1 - safe_divide(F.col("sse"), F.col("var") * F.col("rows"))),
    }
    pairs = F.array(
        *[F.struct(F.lit(k).alias(METRIC), v.cast("double").alias(VALUE)) for k, v in metrics.items()]
    )
    return agg.select(*keys, F.inline(pairs)).where(F.col(VALUE).isNotNull() & ~F.isnan(VALUE))


# --------------------------------------------------------------------------- status


def _lookup(values: Mapping[str, object], dtype: str, key: Column | None = None) -> Column:
    if not values:
        return F.lit(None).cast(dtype)
    items: list[Column] = []
    for k, v in sorted(values.items()):
        items += [F.lit(k), F.lit(v).cast(dtype)]
    return F.element_at(F.create_map(*items), key if key is not None else F.col(METRIC))


def with_status(
    thresholds: Mapping[str, MetricThreshold],
    column_thresholds: Mapping[str, Mapping[str, MetricThreshold]] | None = None,
) -> Callable[[DataFrame], DataFrame]:
    """Add warn_threshold, alert_threshold and status (ok / warn / alert) from ``metric``
    and ``value``. 'above' thresholds are crossed by larger values, 'below' by smaller.
    ``column_thresholds[column][metric]`` replaces the metric's threshold for that column."""
    overrides = {
        f"{column}\u0000{metric}": t
        for column, by in (column_thresholds or {}).items()
        for metric, t in by.items()
    }

    def transform(df: DataFrame) -> DataFrame:
        def pick(field: str, dtype: str) -> Column:
            default = _lookup({k: getattr(t, field) for k, t in thresholds.items()}, dtype)
            if not overrides or COLUMN not in df.columns:
                return default
            key = F.concat_ws("\u0000", F.col(COLUMN), F.col(METRIC))
            given = _lookup({k: True for k in overrides}, "boolean", key)
            value = _lookup({k: getattr(t, field) for k, t in overrides.items()}, dtype, key)
            return F.when(F.coalesce(given, F.lit(False)), value).otherwise(default)

        warn = pick("warn", "double")
        alert = pick("alert", "double")
        below = F.col("__direction") == F.lit("below")
        value = F.col(VALUE)

        def crossed(bound: Column) -> Column:
            return bound.isNotNull() & F.when(F.coalesce(below, F.lit(False)), value < bound).otherwise(
                value > bound
            )

        return (
            df.withColumn("__direction", pick("direction", "string"))
            .withColumn("warn_threshold", warn)
            .withColumn("alert_threshold", alert)
            .withColumn(
                "status",
                F.when(crossed(F.col("alert_threshold")), F.lit("alert"))
                .when(crossed(F.col("warn_threshold")), F.lit("warn"))
                .otherwise(F.lit("ok")),
            )
            .drop("__direction")
        )

    return transform


def safe_divide(numerator: Column, denominator: Column) -> Column:
    """Division that is null (not an ANSI error) when the denominator is 0 or null."""
    return F.try_divide(numerator, denominator)


def _require(df: DataFrame, table: str, columns: Sequence[str]) -> None:
    have = set(df.columns)
    for column in columns:
        if column not in have:
            raise MissingColumnError(table, column, list(have))
