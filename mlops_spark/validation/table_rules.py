"""Table rules: per-partition counts in one aggregation, then empty partitions, row counts,
the bad-row share and freshness decided before anything is written."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops_spark.config import TableValidation
from mlops_spark.errors import DataQualityError
from mlops_spark.validation.rules import DUPLICATE_ROW, FAILED_RULES

# ----------------------------------------------------------------------------- table rules


@dataclass
class PartitionReport:
    """What validation found in one partition (or the whole table when unpartitioned)."""

    partition: dt.date | None
    rows: int
    bad_rows: int
    rule_counts: dict[str, int] = field(default_factory=dict)
    newest: dict[str, object] = field(default_factory=dict)
    """{freshness column: its newest value in the partition}."""

    @property
    def bad_share(self) -> float:
        return self.bad_rows / self.rows if self.rows else 0.0


def partition_reports(
    checked: DataFrame,
    date_column: str | None,
    rule_names: Sequence[str],
    freshness_columns: Sequence[str] = (),
) -> list[PartitionReport]:
    """Per-partition row counts, per-rule failure counts and newest values, in one aggregation."""
    names = list(dict.fromkeys([*rule_names, DUPLICATE_ROW]))
    group = [F.col(date_column)] if date_column else []
    aggs = [F.count(F.lit(1)).alias("__rows"), F.sum((F.size(FAILED_RULES) > 0).cast("long")).alias("__bad")]
    aggs += [
        F.sum(F.array_contains(FAILED_RULES, n).cast("long")).alias(f"__r{i}") for i, n in enumerate(names)
    ]
    fresh = list(dict.fromkeys(freshness_columns))
    aggs += [F.max(F.col(c)).alias(f"__f{i}") for i, c in enumerate(fresh)]
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
                newest={c: r[f"__f{i}"] for i, c in enumerate(fresh)},
            )
        )
    return sorted(reports, key=lambda p: (p.partition is None, p.partition))


def _as_date(value: object) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def check_table_rules(
    table: str,
    policy: TableValidation,
    reports: Sequence[PartitionReport],
    requested: Sequence[dt.date] | None,
    freshest: dt.datetime | dt.date | None = None,
    as_of: dt.date | None = None,
) -> None:
    """Fail (before any write) on empty partitions, row-count bounds, bad share, freshness.

    * empty partition: a requested date with no rows (unless ``allow_empty``);
    * ``row_count``: rows per partition (an empty requested partition counts 0) within
      [min, max];
    * ``max_bad_share``: the share of a partition's rows that failed a row rule;
    * ``freshness``: in each partition, the newest value of ``column`` is at most
      ``max_age_days`` days before the partition date (stale data delivered as a new day).
      For an unpartitioned table the reference date is ``as_of`` and the newest value is
      ``freshest`` (or the report's own). A column that is entirely null is not fresh.
    """
    problems: list[str] = []
    seen = {p.partition for p in reports}
    empty = [d for d in requested or () if d not in seen]
    if empty and not policy.allow_empty:
        problems.append(
            "empty partition(s) "
            + ", ".join(d.isoformat() for d in empty[:5])
            + (" ..." if len(empty) > 5 else "")
            + " (no rows in bronze; ingest them, or set allow_empty: true to accept)"
        )
    sized = [*reports, *[PartitionReport(d, 0, 0) for d in empty]]
    for exp in policy.expectations:
        if exp.rule != "row_count":
            continue
        for p in sorted(sized, key=lambda p: (p.partition is None, p.partition)):
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
        if exp.rule != "freshness" or exp.column is None or exp.max_age_days is None:
            continue
        for p in reports:
            reference = p.partition or as_of
            if reference is None:
                continue
            value = p.newest.get(exp.column)
            if p.partition is None and freshest is not None:
                value = freshest
            newest = _as_date(value)
            if newest is None or (reference - newest).days > exp.max_age_days:
                problems.append(
                    f"{exp.rule_name}: {_where(p)}: newest {exp.column} is {newest or 'null'}, more than "
                    f"{exp.max_age_days} day(s) before {reference} (stale data?)"
                )
    if problems:
        raise DataQualityError(f"table {table!r}: " + "; ".join(problems) + ". Nothing was written.")


def _where(p: PartitionReport) -> str:
    return f"partition {p.partition}" if p.partition else "table"
