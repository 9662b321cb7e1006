"""features: silver -> the feature table, incrementally by partition."""

from __future__ import annotations

import datetime as dt
import math

from pyspark.sql import DataFrame, SparkSession

from mlops_spark import lake
from mlops_spark.config import AppConfig
from mlops_spark.errors import JobFailed, MlopsError
from mlops_spark.features import (
    build_features,
    check_entities_unique,
    check_join_keys_unique,
    history_days,
    lookup_history_hours,
)
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
        table = build_features(spec, tables_for(ctx, targets), targets).persist()
        try:
            check_entities_unique(spec, table)
            result = lake.write_partitions(
                table,
                out_path,
                date_col,
                targets,
                f"features.{spec.name}",
                "features from " + ", ".join(f"{r.name}@v{r.version}" for r in ctx.reads),
            )
        except MlopsError:
            raise
        except Exception as exc:
            raise JobFailed(
                f"features.{spec.name}: computing {lo}..{hi} failed in Spark: {lake.describe_error(exc)}. "
                "Nothing was written."
            ) from None
        finally:
            table.unpersist()
        ctx.wrote(result)
        ctx.say(f"features.{spec.name}: {len(targets)} partition(s) {lo}..{hi}, {result.rows_written:,} rows")

    return run_job("features", config, args.as_dict(), body, spark)


def tables_for(ctx: JobContext, targets: list[dt.date]) -> dict[str, DataFrame]:
    """The silver tables the spec needs, each read only as far back as the features look.

    The base table from ``history_days`` before the first target (trailing aggregates), the
    as-of lookup tables from ``max_age_hours`` before it, dimension tables whole (after
    checking they have one row per join key, so a join cannot copy feature rows).
    """
    spec = ctx.config.features
    lo, hi = min(targets), max(targets)
    tables: dict[str, DataFrame] = {}
    tables[spec.base_table] = _read(ctx, spec.base_table, (lo - dt.timedelta(days=history_days(spec)), hi))
    lookup_days = math.ceil(lookup_history_hours(spec) / 24) + 1
    for lookup in spec.lookups:
        tables[lookup.table] = _read(ctx, lookup.table, (lo - dt.timedelta(days=lookup_days), hi))
    for join in spec.joins:
        tables[join.table] = _read(ctx, join.table, None)
        check_join_keys_unique(join, tables[join.table])
    return tables


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
