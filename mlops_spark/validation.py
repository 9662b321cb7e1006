"""Expectations -> (valid, quarantine) DataFrames, and the schema policy.

Row rules (not_null, type, range, allowed_values, regex, unique, expression) mark each
row with the names of every rule it fails; failing rows go to quarantine with those names,
the original row (as JSON, so the quarantine schema survives source changes) and the job
run id. Exact duplicate rows keep one copy in silver and send the others to quarantine as
``duplicate_row``, so rows in = silver + quarantine, always.

Table rules (row_count, freshness, an empty partition, the bad-row share) fail the job
before anything is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.config import Expectation, TableValidation
from mlops_spark.errors import ConfigError, DataQualityError, MissingColumnError, SchemaChangeError

FAILED_RULES = "failed_rules"
DUPLICATE_ROW = "duplicate_row"
ROW_RULES = {"not_null", "type", "range", "allowed_values", "regex", "unique", "expression"}

Transform = Callable[[DataFrame], DataFrame]


# ----------------------------------------------------------------------------- schema policy

# Widening casts that lose nothing: the policy adapts to these instead of failing.
_WIDENINGS = {
    ("int", "bigint"),
    ("int", "double"),
    ("bigint", "double"),
    ("float", "double"),
    ("smallint", "int"),
    ("smallint", "bigint"),
    ("tinyint", "int"),
    ("tinyint", "bigint"),
    ("int", "float"),
    ("date", "timestamp"),
}


@dataclass(frozen=True)
class SchemaChange:
    kind: str  # added | removed | retyped | widened
    column: str
    detail: str = ""


def compare_schemas(expected: T.StructType, actual: T.StructType) -> list[SchemaChange]:
    """How `actual` (new bronze) differs from `expected` (what silver holds)."""
    exp = {f.name: f.dataType.simpleString() for f in expected.fields}
    act = {f.name: f.dataType.simpleString() for f in actual.fields}
    changes: list[SchemaChange] = []
    for name, dtype in act.items():
        if name not in exp:
            changes.append(SchemaChange("added", name, dtype))
        elif exp[name] != dtype:
            kind = "widened" if (dtype, exp[name]) in _WIDENINGS else "retyped"
            changes.append(SchemaChange(kind, name, f"{exp[name]} -> {dtype}"))
    for name in exp:
        if name not in act:
            changes.append(SchemaChange("removed", name, exp[name]))
    return changes


def enforce_schema_policy(
    table: str,
    expected: T.StructType | None,
    df: DataFrame,
    policy: TableValidation,
    system_columns: Sequence[str] = (),
) -> tuple[DataFrame, list[SchemaChange]]:
    """Adapt `df` to the silver schema or fail naming table, column and change.

    * a new column: carried as nullable (``on_new_column: adapt``) or an error;
    * a removed, renamed or retyped column: an error (a rename shows as both);
    * a lossless widening (int -> bigint): cast back to the silver type.
    """
    if expected is None:
        return df, []
    expected = T.StructType([f for f in expected.fields if f.name not in system_columns])
    changes = compare_schemas(expected, df.schema)
    added = [c for c in changes if c.kind == "added"]
    removed = [c for c in changes if c.kind == "removed"]
    retyped = [c for c in changes if c.kind == "retyped"]
    problems = []
    if removed and added:
        problems.append(
            "column(s) "
            + ", ".join(repr(c.column) for c in removed)
            + " missing and "
            + ", ".join(repr(c.column) for c in added)
            + " new: renamed? map the new name in the source or update the expectations"
        )
    elif removed:
        problems.append(
            "column(s) "
            + ", ".join(f"{c.column!r} ({c.detail})" for c in removed)
            + " missing from the new data"
        )
    if retyped:
        problems.append("column(s) " + ", ".join(f"{c.column!r} changed type {c.detail}" for c in retyped))
    if added and not removed and policy.on_new_column == "fail":
        problems.append(
            "new column(s) "
            + ", ".join(f"{c.column!r} ({c.detail})" for c in added)
            + " and on_new_column is 'fail'"
        )
    if problems:
        raise SchemaChangeError(f"table {table!r}: " + "; ".join(problems))
    widened = {c.column for c in changes if c.kind == "widened"}
    if widened:
        types = {f.name: f.dataType for f in expected.fields}
        df = df.select(*[F.col(c).cast(types[c]).alias(c) if c in widened else F.col(c) for c in df.columns])
    return df, changes


# ----------------------------------------------------------------------------- row rules


def _require(df: DataFrame, table: str, columns: Sequence[str]) -> None:
    for c in columns:
        if c not in df.columns:
            raise MissingColumnError(table, c, df.columns)


def rule_passes(exp: Expectation) -> Column:
    """A column that is true when a row passes a (non-unique) row rule.

    Null handling follows SQL CHECK constraints: only `not_null` (and `type`, for
    non-castable values) fail a null; other rules pass it.
    """
    c = F.col(exp.column) if exp.column else None
    if exp.rule == "not_null":
        assert c is not None
        return c.isNotNull()
    if exp.rule == "type":
        assert c is not None and exp.dtype
        return c.isNull() | F.expr(f"try_cast(`{exp.column}` AS {exp.dtype})").isNotNull()
    if exp.rule == "range":
        assert c is not None
        ok = F.lit(True)
        if exp.min is not None:
            ok = ok & (c >= F.lit(exp.min))
        if exp.max is not None:
            ok = ok & (c <= F.lit(exp.max))
        return c.isNull() | (ok & ~F.isnan(c.cast("double")))
    if exp.rule == "allowed_values":
        assert c is not None
        return c.isNull() | c.isin(exp.values)
    if exp.rule == "regex":
        assert c is not None and exp.pattern
        return c.isNull() | c.cast("string").rlike(exp.pattern)
    if exp.rule == "expression":
        assert exp.expr
        return F.coalesce(F.expr(exp.expr), F.lit(True))
    raise ConfigError(f"rule {exp.rule!r} is not a row rule")


def with_failed_rules(table: str, policy: TableValidation, date_column: str | None) -> Transform:
    """Curried: add ``failed_rules`` (array of rule names, empty when the row is clean).

    Exact duplicates (on ``dedupe_on``, or the whole row) keep their first copy; the others
    fail ``duplicate_row``. Key duplicates that differ in content all fail ``unique:<key>``:
    which copy is right cannot be known.
    """

    def transform(df: DataFrame) -> DataFrame:
        data_cols = [c for c in df.columns]
        checks: list[Column] = []
        for exp in policy.expectations:
            if exp.rule not in ROW_RULES:
                continue
            cols = [exp.column] if exp.column else list(exp.columns)
            _require(df, table, [c for c in cols if c])
            if exp.rule == "unique":
                w = Window.partitionBy(*[F.col(k) for k in exp.columns])
                distinct_rows = F.size(F.collect_set(F.to_json(F.struct(*data_cols))).over(w))
                checks.append(F.when(distinct_rows > 1, F.lit(exp.rule_name)))
            else:
                try:
                    passes = rule_passes(exp)
                    _ = df.select(passes).schema  # analyse now: a bad rule names itself
                except MissingColumnError:
                    raise
                except Exception as exc:
                    msg = str(exc).strip().splitlines()[0]
                    raise ConfigError(
                        f"validation.tables.{table}: rule {exp.rule_name!r} cannot be applied: {msg}"
                    ) from None
                checks.append(F.when(~passes, F.lit(exp.rule_name)))
        dedupe = policy.dedupe_on or data_cols
        _require(df, table, dedupe)
        order = [F.col(c).asc_nulls_last() for c in data_cols]
        first_copy = F.row_number().over(Window.partitionBy(*dedupe).orderBy(*order))
        checks.append(F.when(first_copy > 1, F.lit(DUPLICATE_ROW)))
        failed = F.filter(F.array(*checks), lambda x: x.isNotNull())
        return df.withColumn(FAILED_RULES, failed)

    return transform


def typed(policy: TableValidation) -> Transform:
    """Curried: cast columns that have a `type` rule to that type (silver is typed)."""
    casts = {e.column: e.dtype for e in policy.expectations if e.rule == "type" and e.column}

    def transform(df: DataFrame) -> DataFrame:
        return df.select(
            *[
                F.expr(f"try_cast(`{c}` AS {casts[c]})").alias(c) if c in casts else F.col(c)
                for c in df.columns
            ]
        )

    return transform


def split_valid(checked: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(rows that passed every rule, rows that failed at least one)."""
    valid = checked.where(F.size(FAILED_RULES) == 0).drop(FAILED_RULES)
    bad = checked.where(F.size(FAILED_RULES) > 0)
    return valid, bad


def to_quarantine(bad: DataFrame, date_column: str | None, job_run_id: str) -> DataFrame:
    """Quarantine rows: partition date, the original row as JSON, rules failed, run id."""
    data_cols = [c for c in bad.columns if c != FAILED_RULES]
    date = F.col(date_column) if date_column else F.lit(None).cast("date")
    return bad.select(
        date.alias(date_column or "date"),
        F.to_json(F.struct(*[F.col(c) for c in data_cols])).alias("row"),
        F.col(FAILED_RULES),
        F.lit(job_run_id).alias("job_run_id"),
        F.current_timestamp().alias("quarantined_at"),
    )


# ----------------------------------------------------------------------------- table rules


@dataclass
class PartitionReport:
    """What validation found in one partition (or the whole table when unpartitioned)."""

    partition: dt.date | None
    rows: int
    bad_rows: int
    rule_counts: dict[str, int] = field(default_factory=dict)

    @property
    def bad_share(self) -> float:
        return self.bad_rows / self.rows if self.rows else 0.0


def partition_reports(
    checked: DataFrame, date_column: str | None, rule_names: Sequence[str]
) -> list[PartitionReport]:
    """Per-partition row counts and per-rule failure counts, in one aggregation."""
    names = [*rule_names, DUPLICATE_ROW]
    group = [F.col(date_column)] if date_column else []
    aggs = [F.count(F.lit(1)).alias("__rows"), F.sum((F.size(FAILED_RULES) > 0).cast("long")).alias("__bad")]
    aggs += [
        F.sum(F.array_contains(FAILED_RULES, n).cast("long")).alias(f"__r{i}") for i, n in enumerate(names)
    ]
    rows = checked.groupBy(*group).agg(*aggs).collect()
    reports = []
    for r in rows:
        counts = {n: int(r[f"__r{i}"] or 0) for i, n in enumerate(names)}
        reports.append(
            PartitionReport(
                partition=r[date_column] if date_column else None,
                rows=int(r["__rows"]),
                bad_rows=int(r["__bad"] or 0),
                rule_counts={k: v for k, v in counts.items() if v},
            )
        )
    return sorted(reports, key=lambda p: (p.partition is None, p.partition))


def check_table_rules(
    table: str,
    policy: TableValidation,
    reports: Sequence[PartitionReport],
    requested: Sequence[dt.date] | None,
    freshest: dt.datetime | dt.date | None = None,
    as_of: dt.date | None = None,
) -> None:
    """Fail (before any write) on empty partitions, row-count bounds, bad share, freshness."""
    problems: list[str] = []
    seen = {p.partition for p in reports}
    if requested is not None and not policy.allow_empty:
        empty = [d for d in requested if d not in seen]
        if empty:
            problems.append(
                "empty partition(s) "
                + ", ".join(d.isoformat() for d in empty[:5])
                + (" ..." if len(empty) > 5 else "")
                + " (set allow_empty: true to accept)"
            )
    for exp in policy.expectations:
        if exp.rule != "row_count":
            continue
        for p in reports:
            if (exp.min is not None and p.rows < exp.min) or (exp.max is not None and p.rows > exp.max):
                problems.append(
                    f"{_where(p)} has {p.rows} rows, outside [{exp.min}, {exp.max}] ({exp.rule_name})"
                )
    for p in reports:
        if p.bad_share > policy.max_bad_share:
            top = sorted(p.rule_counts.items(), key=lambda kv: -kv[1])[:3]
            problems.append(
                f"{_where(p)}: {p.bad_rows}/{p.rows} rows ({p.bad_share:.1%}) failed expectations, "
                f"above max_bad_share {policy.max_bad_share:.1%} (top rules: "
                + ", ".join(f"{k}={v}" for k, v in top)
                + ")"
            )
    for exp in policy.expectations:
        if exp.rule != "freshness" or as_of is None or exp.max_age_days is None:
            continue
        newest = freshest.date() if isinstance(freshest, dt.datetime) else freshest
        if newest is None or (as_of - newest).days > exp.max_age_days:
            problems.append(
                f"{exp.rule_name}: newest {exp.column} is {newest}, more than "
                f"{exp.max_age_days} day(s) before {as_of}"
            )
    if problems:
        raise DataQualityError(f"table {table!r}: " + "; ".join(problems) + ". Nothing was written.")


def _where(p: PartitionReport) -> str:
    return f"partition {p.partition}" if p.partition else "table"
