"""ingest: land a source's tables in bronze (date-partitioned tables one day at a time)."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark import lake
from mlops_spark.config import AppConfig
from mlops_spark.jobs.args import JobArgs
from mlops_spark.lake import WriteResult
from mlops_spark.runtime import JobContext, run_job
from mlops_spark.sources import make_source


def ingest(config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None) -> JobContext:
    """Copy every configured source table into ``bronze.<table>``.

    Date-partitioned tables replace exactly the dates they carry (all dates, or those of
    --date / --from --to), so a rerun or a replayed day never duplicates rows. Dimension
    tables (no date) are replaced whole when no date is selected or when they are missing.
    """

    def body(ctx: JobContext) -> None:
        source = make_source(config.source)
        date_col = config.lake.date_column
        for table, spec in config.source.tables.items():
            path = ctx.table_path("bronze", table)
            name = f"bronze.{table}"
            df = source.read(ctx.spark, table)
            if spec.date_expr is None:
                if args.date_range is None or not lake.is_table(ctx.spark, path):
                    ctx.wrote(lake.overwrite_table(df, path, name, f"ingest run {ctx.run_id}"))
                continue
            source_rows = df.withColumn(date_col, F.expr(spec.date_expr)).persist()
            undated = source_rows.where(F.col(date_col).isNull())
            rng = args.date_range
            if rng is None:
                landed = land_undated(ctx, table, undated, spec.date_expr)
                if landed is not None:
                    ctx.wrote(landed)
            else:
                missing = undated.count()
                if missing:
                    ctx.say(
                        f"{name}: {missing:,} source row(s) have no date ({spec.date_expr} is null); "
                        f"an ingest without --date/--from lands them in quarantine.{table}_undated"
                    )
            df = source_rows.where(
                lake.partition_filter(date_col, date_range=rng) if rng else F.col(date_col).isNotNull()
            )
            dates = [r[0] for r in df.select(date_col).distinct().collect() if r[0] is not None]
            if not dates:
                ctx.say(
                    f"{name}: the source has no rows for {rng[0]}..{rng[1]}"
                    if rng
                    else f"{name}: source is empty"
                )
                source_rows.unpersist()
                continue
            result = lake.write_partitions(df, path, date_col, dates, name, f"ingest run {ctx.run_id}")
            source_rows.unpersist()
            ctx.wrote(result)
        ctx.say(f"bronze tables: {', '.join(w.name for w in ctx.writes) or 'none written'}")

    return run_job("ingest", config, args.as_dict(), body, spark)


def land_undated(ctx: JobContext, table: str, undated: DataFrame, date_expr: str) -> WriteResult | None:
    """Source rows whose date expression is null cannot go to any partition: they are kept,
    whole and with the reason, in ``quarantine.<table>_undated`` (replaced on each full
    ingest; not created while every row has a date)."""
    name = f"{table}_undated"
    path = ctx.table_path("quarantine", name)
    if undated.isEmpty() and not lake.is_table(ctx.spark, path):
        return None
    rows = undated.drop(ctx.config.lake.date_column).select(
        "*",
        F.lit(f"date_expr is null: {date_expr}").alias("quarantine_reason"),
        F.lit(ctx.run_id).alias("ingest_run_id"),
    )
    result = lake.overwrite_table(
        rows, ctx.table_path("quarantine", name), f"quarantine.{name}", f"ingest run {ctx.run_id}"
    )
    if result.rows_written:
        ctx.say(
            f"bronze.{table}: {result.rows_written:,} source row(s) have no date: kept in quarantine.{name}"
        )
    return result
