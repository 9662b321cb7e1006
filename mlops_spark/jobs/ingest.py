"""ingest: land a source's tables in bronze (date-partitioned tables one day at a time)."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark import lake
from mlops_spark.caching import persisted
from mlops_spark.config import AppConfig
from mlops_spark.jobs.args import JobArgs
from mlops_spark.lake import WriteResult
from mlops_spark.results import IngestResult
from mlops_spark.runtime import JobContext, JobRun, run_job
from mlops_spark.sources import make_source


def ingest(
    config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None
) -> JobRun[IngestResult]:
    """Copy every configured source table into ``bronze.<table>``.

    Date-partitioned tables replace exactly the dates they carry (all dates, or those of
    --date / --from --to), so a rerun or a replayed day never duplicates rows. Dimension
    tables (no date) are replaced whole when no date is selected or when they are missing.
    """

    def body(ctx: JobContext) -> IngestResult:
        if config.source.adopted:
            return adopt_in_place(ctx)
        source = make_source(config.source)
        date_col = config.lake.date_column
        rng = args.date_range
        for table, spec in config.source.tables.items():
            bronze = ctx.catalog.bronze(table)
            df = source.read(ctx.spark, table)
            if spec.date_expr is None:
                if rng is None or not lake.exists(ctx.spark, bronze):
                    ctx.wrote(lake.overwrite_table(df, bronze, f"ingest run {ctx.run_id}"))
                continue
            with persisted(df.withColumn(date_col, F.expr(spec.date_expr))) as source_rows:
                undated = source_rows.where(F.col(date_col).isNull())
                if rng is None:
                    landed = land_undated(ctx, table, undated, spec.date_expr)
                    if landed is not None:
                        ctx.wrote(landed)
                elif missing := undated.count():
                    ctx.say(
                        f"{bronze.name}: {missing:,} source row(s) have no date ({spec.date_expr} is null); "
                        f"an ingest without --date/--from lands them in {ctx.catalog.undated(table).name}"
                    )
                dated = source_rows.where(
                    lake.partition_filter(date_col, date_range=rng) if rng else F.col(date_col).isNotNull()
                )
                dates = [r[0] for r in dated.select(date_col).distinct().collect() if r[0] is not None]
                if dates:
                    ctx.wrote(lake.write_partitions(dated, bronze, dates, f"ingest run {ctx.run_id}"))
                else:
                    ctx.say(
                        f"{bronze.name}: the source has no rows for {rng[0]}..{rng[1]}"
                        if rng
                        else f"{bronze.name}: source is empty"
                    )
        names = tuple(w.name for w in ctx.writes if w.name.startswith("bronze."))
        ctx.say(f"bronze tables: {', '.join(names) or 'none written'}")
        return IngestResult(names)

    return run_job("ingest", config, args.as_dict(), body, spark)


def land_undated(ctx: JobContext, table: str, undated: DataFrame, date_expr: str) -> WriteResult | None:
    """Source rows whose date expression is null cannot go to any partition: they are kept,
    whole and with the reason, in ``quarantine.<table>_undated`` (replaced on each full
    ingest; not created while every row has a date)."""
    target = ctx.catalog.undated(table)
    if undated.isEmpty() and not lake.exists(ctx.spark, target):
        return None
    rows = undated.drop(ctx.config.lake.date_column).select(
        "*",
        F.lit(f"date_expr is null: {date_expr}").alias("quarantine_reason"),
        F.lit(ctx.run_id).alias("ingest_run_id"),
    )
    result = lake.overwrite_table(rows, target, f"ingest run {ctx.run_id}")
    if result.rows_written:
        ctx.say(f"bronze.{table}: {result.rows_written:,} source row(s) have no date: kept in {target.name}")
    return result


def adopt_in_place(ctx: JobContext) -> IngestResult:
    """A Delta source read in place: nothing to copy; check each table is there and say
    which version bronze is."""
    for table in ctx.config.source.tables:
        bronze = ctx.catalog.bronze(table)
        _, ref = lake.read_table(ctx.spark, bronze)
        ctx.read(ref)
        dates = lake.list_partitions(ctx.spark, bronze) if bronze.partitioned else []
        span = f", {len(dates)} partition(s) {dates[0]}..{dates[-1]}" if dates else ""
        where = f"the Delta table at {bronze.path} v{ref.version}{span}"
        ctx.say(f"{bronze.name} is {where}: adopted in place, not copied")
    return IngestResult(())
