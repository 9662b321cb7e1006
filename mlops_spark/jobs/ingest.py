"""ingest: land a source's tables in bronze (date-partitioned tables one day at a time)."""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from mlops_spark import lake
from mlops_spark.config import AppConfig
from mlops_spark.jobs.args import JobArgs
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
            df = df.withColumn(date_col, F.expr(spec.date_expr))
            rng = args.date_range
            if rng is not None:
                df = df.where(lake.partition_filter(date_col, date_range=rng))
            df = df.persist()
            dates = [r[0] for r in df.select(date_col).distinct().collect() if r[0] is not None]
            if not dates:
                ctx.say(
                    f"{name}: the source has no rows for {rng[0]}..{rng[1]}"
                    if rng
                    else f"{name}: source is empty"
                )
                df.unpersist()
                continue
            result = lake.write_partitions(df, path, date_col, dates, name, f"ingest run {ctx.run_id}")
            df.unpersist()
            ctx.wrote(result)
        ctx.say(f"bronze tables: {', '.join(w.name for w in ctx.writes) or 'none written'}")

    return run_job("ingest", config, args.as_dict(), body, spark)
