"""ok / warn / alert per monitoring row.

Where a row's (kind, column, slice, metric, window) has a calibrated limit (the model's
monitoring baseline, `mlops_spark.monitoring.baseline`), that limit decides, and ``relative``
says how far the value is from the reference chunks' mean in their standard deviations (in
the direction where the metric gets worse). Elsewhere the configured per-metric thresholds
decide. Per-column thresholds in the config (``monitoring.column_thresholds``) are explicit
overrides and win over both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark.config import MetricThreshold
from mlops_spark.monitoring.calibration import Limits
from mlops_spark.monitoring.frames import COLUMN, METRIC, SLICE, VALUE


def _lookup(values: Mapping[str, object], dtype: str, key: Column | None = None) -> Column:
    if not values:
        return F.lit(None).cast(dtype)
    items: list[Column] = []
    for k, v in sorted(values.items()):
        items += [F.lit(k), F.lit(v).cast(dtype)]
    return F.element_at(F.create_map(*items), key if key is not None else F.col(METRIC))


LIMIT_KEYS = ["model_version", "kind", COLUMN, SLICE, METRIC, "window_days"]

LimitRow = tuple[int, str, str, str, str, int, Limits, str]
"""(model_version, kind, column, slice, metric, window_days, limits, direction 'above'|'below')."""


def limits_frame(spark: SparkSession, rows: Sequence[LimitRow]) -> DataFrame:
    """The calibrated limits as a frame keyed on ``LIMIT_KEYS`` (cal_warn, cal_alert,
    cal_direction, cal_mean, cal_std)."""
    data = [
        (v, k, c, s, m, w, lim.warn, lim.alert, d, lim.mean, lim.std) for v, k, c, s, m, w, lim, d in rows
    ]
    schema = (
        "model_version int, kind string, column string, slice string, metric string, window_days int, "
        "cal_warn double, cal_alert double, cal_direction string, cal_mean double, cal_std double"
    )
    return spark.createDataFrame(data, schema)


def with_status(
    thresholds: Mapping[str, MetricThreshold],
    column_thresholds: Mapping[str, Mapping[str, MetricThreshold]] | None = None,
    limits: DataFrame | None = None,
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

        out = df
        explicit: Column = F.lit(False)
        if overrides and COLUMN in df.columns:
            key = F.concat_ws("\u0000", F.col(COLUMN), F.col(METRIC))
            explicit = F.coalesce(_lookup({k: True for k in overrides}, "boolean", key), F.lit(False))
        direction, warn_t, alert_t = pick("direction", "string"), warn, alert
        relative: Column = F.lit(None).cast("double")
        calibrated: Column = F.lit(False)
        if limits is not None and all(k in df.columns for k in LIMIT_KEYS):
            out = df.join(F.broadcast(limits), LIMIT_KEYS, "left")
            calibrated = F.col("cal_alert").isNotNull() & ~explicit
            direction = F.when(calibrated, F.col("cal_direction")).otherwise(direction)
            warn_t = F.when(calibrated, F.col("cal_warn")).otherwise(warn)
            alert_t = F.when(calibrated, F.col("cal_alert")).otherwise(alert)
            sign = F.when(F.col("cal_direction") == F.lit("below"), F.lit(-1.0)).otherwise(F.lit(1.0))
            relative = F.when(
                F.col("cal_std") > 0, sign * (F.col(VALUE) - F.col("cal_mean")) / F.col("cal_std")
            )
        return (
            out.withColumn("__direction", direction)
            .withColumn("warn_threshold", warn_t)
            .withColumn("alert_threshold", alert_t)
            .withColumn(
                "status",
                F.when(crossed(F.col("alert_threshold")), F.lit("alert"))
                .when(crossed(F.col("warn_threshold")), F.lit("warn"))
                .otherwise(F.lit("ok")),
            )
            .withColumn("relative", relative)
            .withColumn(
                "threshold_source",
                F.when(explicit, F.lit("column"))
                .when(calibrated, F.lit("calibrated"))
                .when(
                    F.col("warn_threshold").isNotNull() | F.col("alert_threshold").isNotNull(), F.lit("fixed")
                ),
            )
            .drop("__direction", "cal_warn", "cal_alert", "cal_direction", "cal_mean", "cal_std")
        )

    return transform
