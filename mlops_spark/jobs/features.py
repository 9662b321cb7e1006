"""features: silver -> the feature table, incrementally by partition."""

from __future__ import annotations

import datetime as dt
import math

from pyspark.sql import DataFrame, SparkSession

from mlops_spark import lake
from mlops_spark.config import AppConfig
from mlops_spark.errors import SPARK_ERRORS, JobFailed, describe_error
from mlops_spark.features import (
    build_features,
    check_entities_unique,
    check_join_keys_unique,
    history_days,
    lookup_history_hours,
)
from mlops_spark.jobs.args import JobArgs
from mlops_spark.partition_policy import select_partitions
from mlops_spark.results import FeaturesResult
from mlops_spark.runtime import JobContext, JobRun, run_job


def features(
    config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None
) -> JobRun[FeaturesResult]:
    """Compute ``features.<name>`` for the silver dates not yet featurised (or a range).

    Reads only the partitions it needs: the target dates, plus the trailing days that
    aggregates look back over and the hours that as-of lookups may reach into.
    """

    def body(ctx: JobContext) -> FeaturesResult:
        spec, catalog = config.features, ctx.catalog
        base, out = catalog.silver(spec.base_table), catalog.features()
        selection = select_partitions(
            base.name,
            lake.list_partitions(ctx.spark, base),
            args.date_range,
            lambda: lake.list_partitions(ctx.spark, out),
            "run the validate job for them first",
        )
        if not selection:
            ctx.say(f"{out.name}: nothing new to compute")
            return FeaturesResult()
        targets = list(selection.targets)
        table = build_features(spec, tables_for(ctx, targets), targets).persist()
        try:
            check_entities_unique(spec, table)
            reads = ", ".join(f"{r.name}@v{r.version}" for r in ctx.reads)
            result = lake.write_partitions(table, out, targets, f"features from {reads}")
        except SPARK_ERRORS as exc:
            raise JobFailed(
                f"{out.name}: computing {selection.describe()} failed in Spark: {describe_error(exc)}. "
                "Nothing was written."
            ) from None
        finally:
            table.unpersist()
        ctx.wrote(result)
        ctx.say(f"{out.name}: {selection.describe()}, {result.rows_written:,} rows")
        return FeaturesResult(selection.targets, result.rows_written)

    return run_job("features", config, args.as_dict(), body, spark)


def tables_for(ctx: JobContext, targets: list[dt.date]) -> dict[str, DataFrame]:
    """The silver tables the spec needs, each read only as far back as the features look.

    The base table from ``history_days`` before the first target (trailing aggregates), the
    as-of lookup tables from ``max_age_hours`` before it, dimension tables whole (after
    checking they have one row per join key, so a join cannot copy feature rows).
    """
    spec = ctx.config.features
    lo, hi = min(targets), max(targets)
    lookup_days = math.ceil(lookup_history_hours(spec) / 24) + 1
    wanted = {spec.base_table: (lo - dt.timedelta(days=history_days(spec)), hi)}
    wanted.update({lookup.table: (lo - dt.timedelta(days=lookup_days), hi) for lookup in spec.lookups})
    tables: dict[str, DataFrame] = {}
    for name, span in wanted.items():
        table = ctx.catalog.silver(name)
        df, ref = lake.read_table(ctx.spark, table, date_range=span if table.partitioned else None)
        tables[name] = df
        ctx.read(ref)
    for join in spec.joins:
        df, ref = lake.read_table(ctx.spark, ctx.catalog.silver(join.table))
        check_join_keys_unique(join, df)
        tables[join.table] = df
        ctx.read(ref)
    return tables
