"""features: silver -> the feature table, incrementally by partition."""

from __future__ import annotations

import datetime as dt
import math

from pyspark.sql import DataFrame, SparkSession

from mlops_spark import lake
from mlops_spark.config import AppConfig
from mlops_spark.features import build_features, history_days, lookup_history_hours
from mlops_spark.jobs.args import JobArgs
from mlops_spark.runtime import JobContext, run_job


def features(config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None) -> JobContext:
    """Compute ``features.<name>`` for the silver dates not yet featurised (or a range).

    Reads only the partitions it needs: the target dates, plus the trailing days that
    aggregates look back over and the hours that as-of lookups may reach into.
    """

    def body(ctx: JobContext) -> None:
        spec, date_col = config.features, config.features.date_column
        base_path = ctx.table_path("silver", spec.base_table)
        out_path = ctx.table_path("features", spec.name)
        available = lake.list_partitions(ctx.spark, base_path, date_col)
        if args.date_range is not None:
            targets = [d for d in available if args.selects(d)]
        else:
            done = set(lake.list_partitions(ctx.spark, out_path, date_col))
            targets = [d for d in available if d not in done]
        if not targets:
            ctx.say(f"features.{spec.name}: nothing new to compute")
            return
        lo, hi = min(targets), max(targets)
        tables: dict[str, DataFrame] = {}
        base_from = lo - dt.timedelta(days=history_days(spec))
        tables[spec.base_table] = _read(ctx, spec.base_table, (base_from, hi))
        lookup_days = math.ceil(lookup_history_hours(spec) / 24) + 1
        for lookup in spec.lookups:
            tables[lookup.table] = _read(ctx, lookup.table, (lo - dt.timedelta(days=lookup_days), hi))
        for join in spec.joins:
            tables[join.table] = _read(ctx, join.table, None)
        table = build_features(spec, tables, targets)
        result = lake.write_partitions(
            table,
            out_path,
            date_col,
            targets,
            f"features.{spec.name}",
            "features from " + ", ".join(f"{r.name}@v{r.version}" for r in ctx.reads),
        )
        ctx.wrote(result)
        ctx.say(f"features.{spec.name}: {len(targets)} partition(s) {lo}..{hi}, {result.rows_written:,} rows")

    return run_job("features", config, args.as_dict(), body, spark)


def _read(ctx: JobContext, table: str, rng: tuple[dt.date, dt.date] | None) -> DataFrame:
    config = ctx.config
    path = ctx.table_path("silver", table)
    partitioned = (
        config.source.tables.get(table) is not None and config.source.tables[table].date_expr is not None
    )
    df, ref = lake.read_table(
        ctx.spark,
        path,
        f"silver.{table}",
        date_column=config.lake.date_column if partitioned and rng else None,
        date_range=rng if partitioned else None,
    )
    ctx.read(ref)
    return df
