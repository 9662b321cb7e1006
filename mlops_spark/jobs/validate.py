"""validate: bronze partitions -> silver (typed, deduplicated) + quarantine (with reasons)."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from mlops_spark import lake
from mlops_spark.config import AppConfig, TableValidation
from mlops_spark.jobs.args import JobArgs
from mlops_spark.runtime import JobContext, run_job
from mlops_spark.validation import (
    check_table_rules,
    enforce_schema_policy,
    partition_reports,
    split_valid,
    to_quarantine,
    typed,
    with_failed_rules,
)


def validate(config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None) -> JobContext:
    """Check bronze against the configured expectations and write silver and quarantine.

    By default only bronze partitions not yet in silver are validated; --date or
    --from/--to re-validate a range. A partition whose bad-row share is above the table's
    ``max_bad_share`` (or that is empty, or breaks a row-count or freshness rule) fails the
    job before anything is written.
    """

    def body(ctx: JobContext) -> None:
        for table, source_spec in config.source.tables.items():
            policy = config.validation.tables.get(table, TableValidation())
            partitioned = source_spec.date_expr is not None
            validate_table(ctx, table, policy, partitioned, args)

    return run_job("validate", config, args.as_dict(), body, spark)


def validate_table(
    ctx: JobContext, table: str, policy: TableValidation, partitioned: bool, args: JobArgs
) -> None:
    spark, date_col = ctx.spark, ctx.config.lake.date_column
    bronze_path = ctx.table_path("bronze", table)
    silver_path = ctx.table_path("silver", table)
    quarantine_path = ctx.table_path("quarantine", table)
    bronze, ref = lake.read_table(spark, bronze_path, f"bronze.{table}")
    ctx.read(ref)
    stamp = f"from bronze.{table}@v{ref.version}"

    dates: list[dt.date] | None = None
    if partitioned:
        available = lake.list_partitions(spark, bronze_path, date_col, ref.version)
        if args.date_range is not None:
            lo, hi = args.date_range
            dates = [d for d in available if lo <= d <= hi]
            # requested days that bronze does not have are empty partitions
            missing = [lo + dt.timedelta(days=i) for i in range((hi - lo).days + 1)]
            requested = sorted(set(dates) | {d for d in missing if d not in available and args.date})
        else:
            done = set(lake.list_partitions(spark, silver_path, date_col))
            dates = [d for d in available if d not in done]
            requested = dates
        if not requested:
            ctx.say(f"silver.{table}: nothing new to validate")
            return
        bronze = bronze.where(lake.partition_filter(date_col, dates=requested))
    else:
        if lake.last_user_metadata(spark, silver_path) == stamp and args.date_range is None:
            ctx.say(f"silver.{table}: up to date with bronze v{ref.version}")
            return
        requested = None

    expected = lake.read_table(spark, silver_path)[0].schema if lake.is_table(spark, silver_path) else None
    bronze, changes = enforce_schema_policy(f"bronze.{table}", expected, bronze, policy)
    for change in changes:
        ctx.say(f"silver.{table}: schema {change.kind} column {change.column!r} ({change.detail})")

    checked = bronze.transform(
        with_failed_rules(f"bronze.{table}", policy, date_col if partitioned else None)
    )
    checked = checked.persist()
    rule_names = [e.rule_name for e in policy.expectations]
    reports = partition_reports(checked, date_col if partitioned else None, rule_names)
    freshest = None
    fresh = [e for e in policy.expectations if e.rule == "freshness"]
    if fresh and fresh[0].column:
        freshest = checked.select(F.max(fresh[0].column)).first()[0]  # type: ignore[index]
    as_of = args.date or (args.end if args.end else None) or (max(requested) if requested else None)
    check_table_rules(f"bronze.{table}", policy, reports, requested, freshest, as_of)

    valid, bad = split_valid(checked)
    silver = valid.transform(typed(policy))
    quarantine = to_quarantine(bad, date_col if partitioned else None, ctx.run_id)
    rows = sum(p.rows for p in reports)
    bad_rows = sum(p.bad_rows for p in reports)
    ctx.rows_read += rows
    merge = bool(changes)
    if partitioned:
        assert requested is not None
        ctx.wrote(
            lake.write_partitions(silver, silver_path, date_col, requested, f"silver.{table}", stamp, merge)
        )
        ctx.wrote(
            lake.write_partitions(
                quarantine, quarantine_path, date_col, requested, f"quarantine.{table}", stamp
            )
        )
    else:
        ctx.wrote(lake.overwrite_table(silver, silver_path, f"silver.{table}", stamp))
        ctx.wrote(lake.overwrite_table(quarantine, quarantine_path, f"quarantine.{table}", stamp))
    checked.unpersist()
    counts: dict[str, int] = {}
    for p in reports:
        for rule, n in p.rule_counts.items():
            counts[rule] = counts.get(rule, 0) + n
    detail = ", ".join(f"{k}={v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    ctx.say(
        f"silver.{table}: {rows - bad_rows:,} of {rows:,} rows passed"
        + (f"; quarantined {bad_rows:,} ({detail})" if bad_rows else "")
    )
    ctx.result.setdefault("rule_counts", {})[table] = counts
