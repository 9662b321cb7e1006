"""validate: bronze partitions -> silver (typed, deduplicated) + quarantine (with reasons).

Two phases, so a failure never leaves half the work written:

1. check every table: schema policy, row rules, table rules (empty partition, row counts,
   bad-row share, freshness). Any failure raises before anything is written.
2. write silver and quarantine of every table (one Delta commit each). If a write fails,
   the writes already committed by this run are undone (RESTORE to the version before the
   run, or a delete of the partitions a first write created), so silver and quarantine
   never disagree about a partition.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark import lake
from mlops_spark.config import AppConfig, TableValidation
from mlops_spark.errors import ConfigError, DataQualityError, JobFailed, MlopsError
from mlops_spark.jobs.args import JobArgs
from mlops_spark.lake import WriteResult
from mlops_spark.runtime import JobContext, run_job
from mlops_spark.validation import (
    PartitionReport,
    SchemaChange,
    check_table_rules,
    enforce_schema_policy,
    failing_rule,
    partition_reports,
    split_valid,
    to_quarantine,
    with_failed_rules,
)

T = TypeVar("T")


def validate(config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None) -> JobContext:
    """Check bronze against the configured expectations and write silver and quarantine.

    By default only bronze partitions not yet validated (in neither silver nor quarantine)
    are checked; --date or --from/--to re-validate a range. A partition whose bad-row share
    is above the table's ``max_bad_share`` (or that is empty, or breaks a row-count or
    freshness rule), a schema change the policy does not allow, or unreadable bronze data
    fails the job before anything is written.
    """

    unknown = sorted(set(config.validation.tables) - set(config.source.tables))
    if unknown:
        raise ConfigError(
            f"validation.tables: {', '.join(map(repr, unknown))} is not a source table "
            f"(source.tables has: {', '.join(config.source.tables) or 'none'}); its rules would never run"
        )

    def body(ctx: JobContext) -> None:
        plans: list[TablePlan] = []
        try:
            for table, source_spec in config.source.tables.items():
                policy = config.validation.tables.get(table, TableValidation())
                plan = plan_table(ctx, table, policy, source_spec.date_expr is not None, args)
                if plan is not None:
                    plans.append(plan)
            write_plans(ctx, plans)
        finally:
            for plan in plans:
                plan.checked.unpersist()
        for plan in plans:
            summarize_table(ctx, plan)

    return run_job("validate", config, args.as_dict(), body, spark)


@dataclass
class TablePlan:
    """One table, checked and ready to write."""

    table: str
    partitioned: bool
    requested: list[dt.date] | None
    checked: DataFrame
    silver: DataFrame
    quarantine: DataFrame
    reports: list[PartitionReport]
    changes: list[SchemaChange] = field(default_factory=list)
    stamp: str = ""


def dates_to_validate(ctx: JobContext, table: str, bronze_version: int, args: JobArgs) -> list[dt.date]:
    """The partitions to validate and write: new dates, or the requested range.

    A single --date that bronze does not have is requested anyway: it is an empty partition.
    """
    spark, date_col = ctx.spark, ctx.config.lake.date_column
    available = lake.list_partitions(spark, ctx.table_path("bronze", table), date_col, bronze_version)
    if args.date_range is not None:
        lo, hi = args.date_range
        dates = [d for d in available if lo <= d <= hi]
        return sorted(set(dates) | ({args.date} if args.date else set()))
    done = set(lake.list_partitions(spark, ctx.table_path("silver", table), date_col))
    done |= set(lake.list_partitions(spark, ctx.table_path("quarantine", table), date_col))
    return [d for d in available if d not in done]


def plan_table(
    ctx: JobContext, table: str, policy: TableValidation, partitioned: bool, args: JobArgs
) -> TablePlan | None:
    """Read, check and split one table; raise (writing nothing) when a table rule fails."""
    spark, date_col = ctx.spark, ctx.config.lake.date_column
    bronze_path = ctx.table_path("bronze", table)
    silver_path = ctx.table_path("silver", table)
    name = f"bronze.{table}"
    bronze, ref = lake.read_table(spark, bronze_path, name)
    ctx.read(ref)
    stamp = f"from bronze.{table}@v{ref.version}"

    requested: list[dt.date] | None = None
    if partitioned:
        lake.require_columns(bronze, name, [date_col])
        requested = dates_to_validate(ctx, table, ref.version, args)
        if not requested:
            ctx.say(f"silver.{table}: nothing new to validate")
            return None
        undated = _spark_action(name, policy, bronze, lambda: bronze.where(F.col(date_col).isNull()).count())
        if undated:
            raise DataQualityError(
                f"table {name!r}: {undated} row(s) have no {date_col!r} (the source's date_expr gave null: "
                "a missing or malformed date), so they belong to no partition; fix or drop them in the "
                "source and re-ingest. Nothing was written."
            )
        bronze = bronze.where(lake.partition_filter(date_col, dates=requested))
    else:
        if lake.last_user_metadata(spark, silver_path) == stamp and args.date_range is None:
            ctx.say(f"silver.{table}: up to date with bronze v{ref.version}")
            return None

    expected = lake.read_table(spark, silver_path)[0].schema if lake.is_table(spark, silver_path) else None
    bronze, changes = enforce_schema_policy(name, expected, bronze, policy)
    checked = bronze.transform(with_failed_rules(name, policy, date_col if partitioned else None)).persist()
    try:
        rule_names = [e.rule_name for e in policy.expectations]
        fresh = [e.column for e in policy.expectations if e.rule == "freshness" and e.column]
        reports = _spark_action(
            name,
            policy,
            bronze,
            lambda: partition_reports(checked, date_col if partitioned else None, rule_names, fresh),
        )
        as_of = args.date or args.end or (None if partitioned else dt.date.today())
        check_table_rules(name, policy, reports, requested, None, as_of)
    except BaseException:
        checked.unpersist()
        raise
    valid, bad = split_valid(checked)
    return TablePlan(
        table=table,
        partitioned=partitioned,
        requested=requested,
        checked=checked,
        silver=valid,
        quarantine=to_quarantine(bad, date_col if partitioned else None, ctx.run_id),
        reports=reports,
        changes=changes,
        stamp=stamp,
    )


def _spark_action(name: str, policy: TableValidation, bronze: DataFrame, action: Callable[[], T]) -> T:
    """Run a Spark action over bronze; turn a failure inside Spark into a clear JobFailed."""
    try:
        return action()
    except MlopsError:
        raise
    except Exception as exc:
        raise _explain_failure(name, policy, bronze, exc) from None


def _explain_failure(name: str, policy: TableValidation, bronze: DataFrame, exc: Exception) -> JobFailed:
    """Say whether bronze's files cannot be read, or which rule raises on the data."""
    try:
        bronze.select(F.max(F.xxhash64(*[F.col(c) for c in bronze.columns]))).collect()
    except Exception as read_exc:
        return JobFailed(
            f"table {name!r}: its data cannot be read ({lake.describe_error(read_exc)}). A data file is "
            "corrupt or missing: restore a good version (DESCRIBE HISTORY / RESTORE) or re-ingest the "
            "affected dates. Nothing was written."
        )
    try:
        rule = failing_rule(name, policy, bronze)
    except Exception:
        rule = None
    if rule is not None:
        return JobFailed(
            f"table {name!r}: rule {rule!r} raised an error on the data ({lake.describe_error(exc)}); "
            "make the rule tolerate every value (e.g. try_cast, try_divide). Nothing was written."
        )
    return JobFailed(
        f"table {name!r}: validation failed in Spark: {lake.describe_error(exc)}. Nothing was written."
    )


def write_plans(ctx: JobContext, plans: list[TablePlan]) -> None:
    """Write silver and quarantine of every plan; undo this run's commits if one write fails."""
    spark, date_col = ctx.spark, ctx.config.lake.date_column
    targets: list[tuple[TablePlan, str, DataFrame]] = []
    for plan in plans:
        targets += [(plan, "silver", plan.silver), (plan, "quarantine", plan.quarantine)]
    before = {
        ctx.table_path(layer, p.table): lake.current_version(spark, ctx.table_path(layer, p.table))
        for p, layer, _ in targets
    }
    written: list[tuple[TablePlan, str]] = []
    for plan, layer, df in targets:
        path, name = ctx.table_path(layer, plan.table), f"{layer}.{plan.table}"
        try:
            if plan.partitioned:
                assert plan.requested is not None
                merge = layer == "silver" and bool(plan.changes)
                result = lake.write_partitions(df, path, date_col, plan.requested, name, plan.stamp, merge)
            else:
                result = lake.overwrite_table(df, path, name, plan.stamp)
        except Exception as exc:
            undone = _undo(ctx, written, before)
            raise JobFailed(
                f"validate: writing {name} failed ({lake.describe_error(exc)}); "
                + (f"undid this run's writes to {', '.join(undone)}; " if undone else "")
                + "silver and quarantine are as they were before the run. Fix the cause and rerun."
            ) from None
        ctx.wrote(result)
        written.append((plan, layer))


def _undo(ctx: JobContext, written: list[tuple[TablePlan, str]], before: dict[str, int | None]) -> list[str]:
    spark, date_col = ctx.spark, ctx.config.lake.date_column
    undone: list[str] = []
    for plan, layer in reversed(written):
        path, name = ctx.table_path(layer, plan.table), f"{layer}.{plan.table}"
        version = before[path]
        result: WriteResult
        if version is not None:
            result = lake.restore_version(spark, path, version, name)
        else:
            result = lake.delete_partitions(spark, path, date_col, plan.requested, name)
        ctx.wrote(result)
        undone.append(name)
    return undone


def summarize_table(ctx: JobContext, plan: TablePlan) -> None:
    """One summary line per table with the per-rule counts (also kept in ctx.result)."""
    rows = sum(p.rows for p in plan.reports)
    bad_rows = sum(p.bad_rows for p in plan.reports)
    ctx.rows_read += rows
    for change in plan.changes:
        ctx.say(f"silver.{plan.table}: schema {change.kind} column {change.column!r} ({change.detail})")
    counts: dict[str, int] = {}
    for p in plan.reports:
        for rule, n in p.rule_counts.items():
            counts[rule] = counts.get(rule, 0) + n
    detail = ", ".join(f"{k}={v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    ctx.say(
        f"bronze.{plan.table}: {rows - bad_rows:,} of {rows:,} rows passed"
        + (f"; quarantined {bad_rows:,} ({detail})" if bad_rows else "")
    )
    ctx.result.setdefault("rule_counts", {})[plan.table] = counts
    ctx.result.setdefault("rows", {})[plan.table] = {
        "read": rows,
        "silver": rows - bad_rows,
        "quarantine": bad_rows,
    }
