"""Validating bronze tables in two phases, so a failure never leaves half the work written.

1. `plan_table` checks a table: schema policy, row rules, table rules (empty partition,
   row counts, bad-row share, freshness). Any failure raises before anything is written.
2. `write_plans` writes silver and quarantine of every table (one Delta commit each). If a
   write fails, the writes already committed by this run are undone (RESTORE to the version
   before the run, or a delete of the partitions a first write created), so silver and
   quarantine never disagree about a partition.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops_spark import lake
from mlops_spark.catalog import Table
from mlops_spark.config import TableValidation
from mlops_spark.errors import SPARK_ERRORS, DataQualityError, JobFailed, MlopsError, describe_error
from mlops_spark.lake import WriteResult
from mlops_spark.partition_policy import select_partitions
from mlops_spark.results import TableCounts
from mlops_spark.runtime import JobContext
from mlops_spark.validation.rules import (
    SchemaChange,
    enforce_schema_policy,
    failing_rule,
    split_valid,
    to_quarantine,
    with_failed_rules,
)
from mlops_spark.validation.table_rules import PartitionReport, check_table_rules, partition_reports

R = TypeVar("R")


@dataclass
class TablePlan:
    """One table, checked and ready to write."""

    table: str
    bronze: Table
    silver_table: Table
    quarantine_table: Table
    requested: list[dt.date] | None
    checked: DataFrame
    silver: DataFrame
    quarantine: DataFrame
    reports: list[PartitionReport]
    changes: list[SchemaChange] = field(default_factory=list)
    stamp: str = ""

    @property
    def counts(self) -> TableCounts:
        rows = sum(p.rows for p in self.reports)
        bad = sum(p.bad_rows for p in self.reports)
        return TableCounts(read=rows, silver=rows - bad, quarantine=bad)

    @property
    def rule_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.reports:
            for rule, n in p.rule_counts.items():
                counts[rule] = counts.get(rule, 0) + n
        return counts


def plan_table(
    ctx: JobContext,
    table: str,
    policy: TableValidation,
    requested_range: tuple[dt.date, dt.date] | None,
    as_of: dt.date | None,
) -> TablePlan | None:
    """Read, check and split one table; raise (writing nothing) when a table rule fails.

    ``requested_range`` is the run's --date / --from --to (None: incremental); ``as_of`` the
    day freshness is judged against for an unpartitioned table (None: today)."""
    catalog, spark = ctx.catalog, ctx.spark
    bronze_t, silver_t, quarantine_t = catalog.bronze(table), catalog.silver(table), catalog.quarantine(table)
    bronze, ref = lake.read_table(spark, bronze_t)
    ctx.read(ref)
    stamp = f"from {bronze_t.name}@v{ref.version}"
    date_col = bronze_t.date_column

    requested: list[dt.date] | None = None
    if date_col is not None:
        lake.require_columns(bronze, bronze_t.name, [date_col])
        selection = select_partitions(
            bronze_t.name,
            lake.list_partitions(spark, bronze_t, ref.version),
            requested_range,
            lambda: {*lake.list_partitions(spark, silver_t), *lake.list_partitions(spark, quarantine_t)},
            "ingest them first",
            empty_day=True,
        )
        if not selection:
            ctx.say(f"{silver_t.name}: nothing new to validate")
            return None
        requested = list(selection.targets)
        undated = _spark_action(
            bronze_t.name, policy, bronze, lambda: bronze.where(F.col(date_col).isNull()).count()
        )
        if undated:
            raise DataQualityError(
                f"table {bronze_t.name!r}: {undated} row(s) have no {date_col!r} (the source's date_expr"
                " gave null: a missing or malformed date), so they belong to no partition; fix or drop "
                "them in the source and re-ingest. Nothing was written."
            )
        bronze = bronze.where(lake.partition_filter(date_col, dates=requested))
    elif lake.last_user_metadata(spark, silver_t) == stamp and requested_range is None:
        ctx.say(f"{silver_t.name}: up to date with bronze v{ref.version}")
        return None

    expected = lake.read_table(spark, silver_t)[0].schema if lake.exists(spark, silver_t) else None
    bronze, changes = enforce_schema_policy(bronze_t.name, expected, bronze, policy)
    checked = bronze.transform(with_failed_rules(bronze_t.name, policy, date_col)).persist()
    try:
        rule_names = [e.rule_name for e in policy.expectations]
        fresh = [e.column for e in policy.expectations if e.rule == "freshness" and e.column]
        reports = _spark_action(
            bronze_t.name, policy, bronze, lambda: partition_reports(checked, date_col, rule_names, fresh)
        )
        when = as_of or (None if date_col else dt.date.today())
        check_table_rules(bronze_t.name, policy, reports, requested, None, when)
    except BaseException:
        checked.unpersist()
        raise
    valid, bad = split_valid(checked)
    return TablePlan(
        table=table,
        bronze=bronze_t,
        silver_table=silver_t,
        quarantine_table=quarantine_t,
        requested=requested,
        checked=checked,
        silver=valid,
        quarantine=to_quarantine(bad, date_col, ctx.run_id),
        reports=reports,
        changes=changes,
        stamp=stamp,
    )


def _spark_action(name: str, policy: TableValidation, bronze: DataFrame, action: Callable[[], R]) -> R:
    """Run a Spark action over bronze; turn a failure inside Spark into a clear JobFailed."""
    try:
        return action()
    except MlopsError:
        raise
    except SPARK_ERRORS as exc:
        raise explain_failure(name, policy, bronze, exc) from None


def explain_failure(name: str, policy: TableValidation, bronze: DataFrame, exc: Exception) -> JobFailed:
    """Say whether bronze's files cannot be read, or which rule raises on the data."""
    try:
        bronze.select(F.max(F.xxhash64(*[F.col(c) for c in bronze.columns]))).collect()
    except SPARK_ERRORS as read_exc:
        return JobFailed(
            f"table {name!r}: its data cannot be read ({describe_error(read_exc)}). A data file is "
            "corrupt or missing: restore a good version (DESCRIBE HISTORY / RESTORE) or re-ingest the "
            "affected dates. Nothing was written."
        )
    try:
        rule = failing_rule(name, policy, bronze)
    except SPARK_ERRORS:
        rule = None
    if rule is not None:
        return JobFailed(
            f"table {name!r}: rule {rule!r} raised an error on the data ({describe_error(exc)}); "
            "make the rule tolerate every value (e.g. try_cast, try_divide). Nothing was written."
        )
    return JobFailed(
        f"table {name!r}: validation failed in Spark: {describe_error(exc)}. Nothing was written."
    )


def write_plans(ctx: JobContext, plans: list[TablePlan]) -> None:
    """Write silver and quarantine of every plan; undo this run's commits if one write fails."""
    spark = ctx.spark
    targets: list[tuple[TablePlan, Table, DataFrame]] = []
    for plan in plans:
        targets += [(plan, plan.silver_table, plan.silver), (plan, plan.quarantine_table, plan.quarantine)]
    before = {t.path: lake.current_version(spark, t) for _, t, _ in targets}
    written: list[tuple[TablePlan, Table]] = []
    for plan, table, df in targets:
        try:
            if plan.requested is not None:
                merge = table is plan.silver_table and bool(plan.changes)
                result = lake.write_partitions(df, table, plan.requested, plan.stamp, merge)
            else:
                result = lake.overwrite_table(df, table, plan.stamp)
        except SPARK_ERRORS as exc:
            undone = _undo(ctx, written, before)
            raise JobFailed(
                f"validate: writing {table.name} failed ({describe_error(exc)}); "
                + (f"undid this run's writes to {', '.join(undone)}; " if undone else "")
                + "silver and quarantine are as they were before the run. Fix the cause and rerun."
            ) from None
        ctx.wrote(result)
        written.append((plan, table))


def _undo(
    ctx: JobContext, written: list[tuple[TablePlan, Table]], before: dict[str, int | None]
) -> list[str]:
    undone: list[str] = []
    for plan, table in reversed(written):
        version = before[table.path]
        result: WriteResult
        if version is not None:
            result = lake.restore_version(ctx.spark, table, version)
        else:
            result = lake.delete_partitions(ctx.spark, table, plan.requested)
        ctx.wrote(result)
        undone.append(table.name)
    return undone


def summary_lines(plan: TablePlan) -> list[str]:
    """The summary lines of one validated table: schema changes and per-rule counts."""
    counts = plan.counts
    lines = [
        f"{plan.silver_table.name}: schema {c.kind} column {c.column!r} ({c.detail})" for c in plan.changes
    ]
    detail = ", ".join(
        f"{k}={v}" for k, v in sorted(plan.rule_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    lines.append(
        f"{plan.bronze.name}: {counts.silver:,} of {counts.read:,} rows passed"
        + (f"; quarantined {counts.quarantine:,} ({detail})" if counts.quarantine else "")
    )
    return lines
