"""ok / warn / alert per monitoring row, from per-metric (and per-column) thresholds."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mlops_spark.config import MetricThreshold
from mlops_spark.monitoring.frames import COLUMN, METRIC, VALUE


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
