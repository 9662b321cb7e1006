"""Declarative features -> pure DataFrame transforms, point-in-time correct.

A `FeatureSpec` (config) describes one feature table:

* ``entity_id`` / ``event_time`` / ``label``: SQL expressions on the base table. The event
  time is the moment the prediction is made; nothing after it may leak into a feature.
* ``columns``: row-level SQL expressions (numeric transforms, date/time parts, buckets).
* ``lookups``: as-of joins - the newest row of another table at or before the event time,
  no older than ``max_age_hours`` (hourly weather at the origin, say).
* ``joins``: left joins to dimension tables that carry no time (plane attributes).
* ``aggregates``: an entity's statistic over the previous N days, from days strictly
  before the row's date (a carrier's delay rate over the previous 7 days).

Fitted, stateful steps (indexing, imputation, scaling) are not here: they live in the
model's pyspark.ml pipeline (training.py), so scoring cannot skew from training.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from mlops_spark.config import AsOfLookup, FeatureSpec, StaticJoin, TrailingAggregate
from mlops_spark.errors import SPARK_ERRORS, JobFailed, MissingColumnError

Transform = Callable[[DataFrame], DataFrame]

EVENT_TIME = "event_time"


def history_days(spec: FeatureSpec) -> int:
    """How many days before the first target date the base table must be read."""
    return max((a.days for a in spec.aggregates), default=0)


def lookup_history_hours(spec: FeatureSpec) -> int:
    return max((lk.max_age_hours for lk in spec.lookups), default=0)


def with_expressions(columns: Sequence[tuple[str, str]], table: str) -> Transform:
    """Curried: add (name, SQL expression) columns, naming the table on a bad expression."""

    def transform(df: DataFrame) -> DataFrame:
        out = df
        for name, expr in columns:
            try:
                out = out.withColumn(name, F.expr(expr))
            except SPARK_ERRORS as exc:  # AnalysisException / ParseException from Spark
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise JobFailed(
                    f"features from {table!r}: cannot compute {name!r} = {expr!r}: {first}"
                ) from None
        return out

    return transform


def with_as_of_lookup(lookup: AsOfLookup, right: DataFrame, row_id: str | None = None) -> Transform:
    """Curried: the newest `right` row with time <= event_time and >= event_time - max_age.

    Equi-joins on the keys plus an hour bucket (each lookup row is copied into the hours it
    may serve), so the join stays linear instead of comparing every pair of rows per key.
    Every left row comes out exactly once (an internal row id, not the entity id, picks the
    newest match, so rows that share an id are not merged); ties between lookup rows with
    the same time are broken by their values, so reruns give the same answer. ``row_id`` is
    accepted for compatibility and not needed.
    """
    for col in [*lookup.keys.values(), lookup.time_column, *lookup.columns]:
        if col not in right.columns:
            raise MissingColumnError(lookup.table, col, right.columns)
    prefix = lookup.prefix
    hours = lookup.max_age_hours
    lk_time = f"__{lookup.table}_time"

    def transform(df: DataFrame) -> DataFrame:
        for col in lookup.keys:
            if col not in df.columns:
                raise MissingColumnError("features base table", col, df.columns)
        r = right.select(
            *[F.col(rc).alias(f"__k_{lc}") for lc, rc in lookup.keys.items()],
            F.col(lookup.time_column).alias(lk_time),
            *[F.col(c).alias(f"{prefix}{c}") for c in lookup.columns],
        ).where(F.col(lk_time).isNotNull())
        # every hour bucket in [time, time + max_age] may use this row
        r = r.withColumn(
            "__r_bucket",
            F.explode(
                F.sequence(
                    F.date_trunc("hour", F.col(lk_time)),
                    F.date_trunc("hour", F.col(lk_time) + F.make_interval(hours=F.lit(hours))),
                    F.expr("INTERVAL 1 HOUR"),
                )
            ),
        )
        left = df.withColumn("__l_bucket", F.date_trunc("hour", F.col(EVENT_TIME))).withColumn(
            "__l_row", F.monotonically_increasing_id()
        )
        cond = F.col("__l_bucket") == F.col("__r_bucket")
        for lc in lookup.keys:
            cond = cond & (F.col(lc) == F.col(f"__k_{lc}"))
        cond = cond & (F.col(lk_time) <= F.col(EVENT_TIME))
        cond = cond & (F.col(lk_time) >= F.col(EVENT_TIME) - F.make_interval(hours=F.lit(hours)))
        joined = left.join(r, on=cond, how="left")
        newest = Window.partitionBy(F.col("__l_row")).orderBy(
            F.col(lk_time).desc_nulls_last(),
            *[F.col(f"{prefix}{c}").asc_nulls_last() for c in lookup.columns],
        )
        out_cols = [*df.columns, *[f"{prefix}{c}" for c in lookup.columns]]
        return (
            joined.withColumn("__rank", F.row_number().over(newest))
            .where(F.col("__rank") == 1)
            .select(*out_cols)
        )

    return transform


def with_static_join(join: StaticJoin, right: DataFrame) -> Transform:
    """Curried: left join to a dimension table; unmatched rows keep nulls (never dropped)."""
    for col in [*join.keys.values(), *join.columns]:
        if col not in right.columns:
            raise MissingColumnError(join.table, col, right.columns)

    def transform(df: DataFrame) -> DataFrame:
        r = right.select(
            *[F.col(rc).alias(f"__j_{lc}") for lc, rc in join.keys.items()],
            *[F.col(src).alias(dst) for src, dst in join.columns.items()],
        )
        cond = [df[lc] == r[f"__j_{lc}"] for lc in join.keys]
        out = df.join(r, on=cond, how="left")
        return out.drop(*[f"__j_{lc}" for lc in join.keys])

    return transform


def daily_trailing_aggregate(agg: TrailingAggregate, history: DataFrame, date_column: str) -> DataFrame:
    """(group..., date, value) where value summarises the `days` days before `date`.

    Built from per-day partial aggregates, so it costs one pass over the history; days
    without data simply contribute nothing. The row's own day is excluded.
    """
    day = F.datediff(F.col(date_column), F.lit(dt.date(1970, 1, 1)))
    v = F.expr(agg.value)
    daily = history.groupBy(*agg.group_by, date_column).agg(
        F.sum(v).alias("__sum"),
        F.count(v).alias("__n"),
        F.max(v).alias("__max"),
        F.min(v).alias("__min"),
    )
    w = Window.partitionBy(*agg.group_by).orderBy(day).rangeBetween(-agg.days, -1)
    s, n = F.sum("__sum").over(w), F.sum("__n").over(w)
    value = {
        "mean": F.when(n > 0, s / n),
        "sum": F.coalesce(s, F.lit(0.0)).cast("double"),
        "count": F.coalesce(n, F.lit(0)).cast("double"),
        "max": F.max("__max").over(w).cast("double"),
        "min": F.min("__min").over(w).cast("double"),
    }[agg.agg]
    return daily.select(*agg.group_by, date_column, value.alias(agg.name))


def with_trailing_aggregate(agg: TrailingAggregate, history: DataFrame, date_column: str) -> Transform:
    def transform(df: DataFrame) -> DataFrame:
        stats = daily_trailing_aggregate(agg, history, date_column)
        return df.join(stats, on=[*agg.group_by, date_column], how="left")

    return transform


def build_features(
    spec: FeatureSpec,
    tables: Mapping[str, DataFrame],
    dates: Sequence[dt.date] | None = None,
) -> DataFrame:
    """The feature table for `dates` (all dates of the base table when None).

    `tables` holds the (silver) tables by name. The base table must include the
    ``history_days(spec)`` days before the first target date when trailing aggregates are
    declared; rows of those days feed the aggregates and are not part of the output.
    """
    if spec.base_table not in tables:
        raise JobFailed(f"features: base table {spec.base_table!r} was not given")
    base = tables[spec.base_table]
    if spec.date_column not in base.columns:
        raise MissingColumnError(spec.base_table, spec.date_column, base.columns)
    prepared = base.transform(
        with_expressions(
            [(spec.entity_id.name, spec.entity_id.expr), (EVENT_TIME, spec.event_time)],
            spec.base_table,
        )
    )
    if spec.label is not None:
        prepared = prepared.transform(with_expressions([(spec.label.name, spec.label.expr)], spec.base_table))
    prepared = prepared.transform(with_expressions([(c.name, c.expr) for c in spec.columns], spec.base_table))
    target = prepared
    if dates is not None:
        target = prepared.where(F.col(spec.date_column).isin([F.lit(d) for d in sorted(set(dates))]))

    out = target
    for lookup in spec.lookups:
        if lookup.table not in tables:
            raise JobFailed(f"features: lookup table {lookup.table!r} was not given")
        out = out.transform(with_as_of_lookup(lookup, tables[lookup.table]))
    for join in spec.joins:
        if join.table not in tables:
            raise JobFailed(f"features: join table {join.table!r} was not given")
        out = out.transform(with_static_join(join, tables[join.table]))
    for agg in spec.aggregates:
        out = out.transform(with_trailing_aggregate(agg, prepared, spec.date_column))

    return out.select(*feature_columns(spec))


def duplicate_keys(
    df: DataFrame, keys: Sequence[str], limit: int = 3
) -> list[tuple[tuple[object, ...], int]]:
    """Up to `limit` (key values, row count) that occur more than once or hold a null."""
    counted = df.groupBy(*keys).agg(F.count(F.lit(1)).alias("__n"))
    null_key = F.lit(False)
    for k in keys:
        null_key = null_key | F.col(k).isNull()
    bad = counted.where((F.col("__n") > 1) | null_key).orderBy(*keys).limit(limit).collect()
    return [(tuple(r[k] for k in keys), int(r["__n"])) for r in bad]


def check_join_keys_unique(join: StaticJoin, right: DataFrame) -> None:
    """A dimension table must have one row per join key, or the left join would copy rows."""
    keys = list(join.keys.values())
    for col in keys:
        if col not in right.columns:
            raise MissingColumnError(join.table, col, right.columns)
    dups = [(values, n) for values, n in duplicate_keys(right, keys) if n > 1]
    if dups:
        shown = ", ".join(f"{dict(zip(keys, values, strict=True))} x{n}" for values, n in dups)
        raise JobFailed(
            f"features: join table {join.table!r} has more than one row per key {keys} ({shown}); "
            "joining it would copy feature rows. Deduplicate it (a validation `unique` rule) and rerun."
        )


def check_entities_unique(spec: FeatureSpec, table: DataFrame) -> None:
    """The feature table holds one row per entity id and date, and no null id."""
    keys = [spec.entity_id.name, spec.date_column]
    dups = duplicate_keys(table, keys)
    if dups:
        shown = ", ".join(f"{values[0]!r} on {values[1]} x{n}" for values, n in dups)
        raise JobFailed(
            f"features.{spec.name}: entity id {spec.entity_id.name!r} = {spec.entity_id.expr!r} is not one "
            f"row per entity and date in {spec.base_table!r} ({shown}); make the expression unique "
            "(add key columns) or deduplicate the base table. Nothing was written."
        )


def feature_columns(spec: FeatureSpec) -> list[str]:
    """The feature table's columns, in order: keys first, label last."""
    cols = [spec.entity_id.name, spec.date_column, EVENT_TIME, *spec.keep]
    cols += [c.name for c in spec.columns]
    for lookup in spec.lookups:
        cols += [f"{lookup.prefix}{c}" for c in lookup.columns]
    for join in spec.joins:
        cols += list(join.columns.values())
    cols += [a.name for a in spec.aggregates]
    if spec.label is not None:
        cols.append(spec.label.name)
    seen: set[str] = set()
    return [c for c in cols if not (c in seen or seen.add(c))]  # type: ignore[func-returns-value]
