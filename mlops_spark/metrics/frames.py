"""Long-format metric frames: ``(group..., metric, value)``, and their small helpers."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mlops_spark.errors import JobFailed, MissingColumnError

METRIC = "metric"
VALUE = "value"

EPSILON = sys.float_info.epsilon
"""Probabilities are clipped to [EPSILON, 1 - EPSILON] before a logarithm: float64 machine
epsilon (2.22e-16), what scikit-learn's log_loss clips to."""


def safe_divide(numerator: Column, denominator: Column) -> Column:
    """Division that is null (not an ANSI error) when the denominator is 0 or null."""
    return F.try_divide(numerator, denominator)


def clipped(probability: Column) -> Column:
    return F.greatest(F.least(probability, F.lit(1.0 - EPSILON)), F.lit(EPSILON))


def long_metrics(df: DataFrame, keys: Sequence[str], metrics: Mapping[str, Column]) -> DataFrame:
    """One row per (keys..., metric) with a double value; null and NaN values are left out
    (a metric that is not defined on a group, e.g. ROC AUC of a one-class group)."""
    pairs = F.array(
        *[F.struct(F.lit(k).alias(METRIC), v.cast("double").alias(VALUE)) for k, v in metrics.items()]
    )
    return df.select(*keys, F.inline(pairs)).where(F.col(VALUE).isNotNull() & ~F.isnan(VALUE))


def join_groups(left: DataFrame, right: DataFrame, keys: Sequence[str], how: str = "inner") -> DataFrame:
    """Join two per-group frames on ``keys`` with null-safe equality (a null group, such as a
    null segment, is a group like any other); no keys: a cross join of one row each."""
    if not keys:
        return left.crossJoin(right)
    renamed = right.select(
        *[F.col(k).alias(f"__r_{k}") for k in keys], *[c for c in right.columns if c not in keys]
    )
    cond = [left[k].eqNullSafe(renamed[f"__r_{k}"]) for k in keys]
    joined = left.join(renamed, cond, how)
    if how in ("full", "outer", "right"):  # a row of the right side only has its keys there
        others = [c for c in joined.columns if c not in keys and not c.startswith("__r_")]
        return joined.select(*[F.coalesce(left[k], renamed[f"__r_{k}"]).alias(k) for k in keys], *others)
    return joined.drop(*[f"__r_{k}" for k in keys])


def require(df: DataFrame, what: str, columns: Sequence[str]) -> None:
    have = set(df.columns)
    for column in columns:
        if column not in have:
            raise MissingColumnError(what, column, list(have))


def as_dict(long: DataFrame, what: str = "the evaluation rows") -> dict[str, float]:
    """The metrics of an ungrouped long frame as {metric: value}; fails when there are none."""
    got = {str(r[METRIC]): float(r[VALUE]) for r in long.select(METRIC, VALUE).collect()}
    if not got.get("rows"):
        raise JobFailed(f"cannot evaluate: {what} have no labelled rows")
    return got
