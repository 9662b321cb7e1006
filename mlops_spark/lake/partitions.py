"""Which partitions a table holds, read from Delta's log instead of its data.

Partition values are typed here, once: a table this framework writes is partitioned by a
DATE column; a foreign table adopted in place may be partitioned by a string, an int or a
timestamp, and its `Partitioning.source_expr` turns those raw values into dates. Every
caller gets ``datetime.date`` values and never compares raw partition strings.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from py4j.protocol import Py4JError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.catalog import Table
from mlops_spark.errors import SPARK_ERRORS, ConfigError, JobFailed, describe_error
from mlops_spark.lake.tables import exists, read_table

log = logging.getLogger(__name__)

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def _load(spark: SparkSession, table: Table, version: int | None) -> DataFrame:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(table.path)


def partition_values_from_paths(
    files: Sequence[str], columns: Sequence[str]
) -> list[dict[str, str | None]] | None:
    """The raw partition values of each file (``.../day=2013-01-01/part-...``), or None when
    a path does not carry them (e.g. column mapping): the caller then scans instead."""
    out: list[dict[str, str | None]] = []
    for file in files:
        values: dict[str, str | None] = {}
        for column in columns:
            marker = f"/{column}="
            at = file.rfind(marker)
            if at < 0:
                return None
            raw = unquote(file[at + len(marker) :].split("/", 1)[0])
            values[column] = None if raw == HIVE_NULL else raw
        out.append(values)
    return out


def iso_dates(values: Sequence[str | None]) -> list[dt.date] | None:
    """Sorted distinct dates of 'YYYY-MM-DD' values (nulls skipped); None if one is not a date."""
    out: set[dt.date] = set()
    for value in values:
        if value is None:
            continue
        try:
            out.add(dt.date.fromisoformat(value))
        except ValueError:
            return None
    return sorted(out)


def list_partitions(spark: SparkSession, table: Table, version: int | None = None) -> list[dt.date]:
    """The dates present in a date-partitioned table (empty when there is no table).

    Reads the snapshot's file list from Delta's log (only partition values, no data file is
    opened: a corrupt file cannot break the listing, and a year of partitions costs no scan).
    """
    part = table.partitioning
    if part is None:
        raise JobFailed(f"table {table.name!r} is not partitioned by date")
    if not exists(spark, table):
        return []
    df = _load(spark, table, version if version is not None else table.version)
    if part.native:
        listed = partition_values_from_paths(df.inputFiles(), [part.date_column])
        if listed is not None:
            return sorted(
                {dt.date.fromisoformat(v) for row in listed if (v := row[part.date_column]) is not None}
            )
        log.warning("%s: file paths carry no partition values; listing its dates with a scan", table.name)
        return _scan_dates(read_table(spark, table, version)[0], part.date_column)
    return sorted(typed_partition_dates(spark, table, df))


def _scan_dates(df: DataFrame, date_column: str) -> list[dt.date]:
    return sorted(r[0] for r in df.select(date_column).distinct().collect() if r[0] is not None)


def physical_partition_columns(spark: SparkSession, table: Table) -> list[str]:
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{table.path}`").select("partitionColumns").first()
    return [str(c) for c in (detail[0] if detail else None) or []]


def typed_partition_dates(spark: SparkSession, table: Table, df: DataFrame) -> set[dt.date]:
    """Dates of a foreign table from its raw partition values and ``source_expr``.

    The raw values (strings in the file paths) are cast to the partition columns' own types
    and put through the expression in one small Spark query. A value the expression turns
    into null is a config error that names the value: its rows would belong to no date.
    """
    part = table.partitioning
    assert part is not None and part.source_expr is not None
    columns = physical_partition_columns(spark, table)
    listed = partition_values_from_paths(df.inputFiles(), columns) if columns else None
    if listed is None:
        log.warning(
            "%s: %s is not over its partition columns %s readable from file paths; listing dates with a scan",
            table.name,
            part.source_expr,
            columns or "(none)",
        )
        typed = df.select(F.expr(part.source_expr).cast("date").alias("__d"), *[F.col(c) for c in columns])
    else:
        schema = {f.name: f.dataType for f in df.schema.fields}
        distinct = sorted(
            {tuple(row[c] for c in columns) for row in listed}, key=lambda v: tuple(map(str, v))
        )
        raw = spark.createDataFrame(
            distinct, T.StructType([T.StructField(c, T.StringType(), True) for c in columns])
        )
        typed = raw.select(
            *[F.col(c).cast(schema[c]).alias(c) for c in columns],
        ).select(F.expr(part.source_expr).cast("date").alias("__d"), *[F.col(c) for c in columns])
    try:
        rows = typed.distinct().collect()
    except SPARK_ERRORS as exc:
        raise ConfigError(
            f"{table.name}: the partition date expression {part.source_expr!r} fails on the table's "
            f"partition values ({describe_error(exc)}); fix it (source.tables.<table>.date_expr), "
            "e.g. with try_to_date"
        ) from None
    bad = [r for r in rows if r["__d"] is None]
    if bad:
        shown = ", ".join(str({c: r[c] for c in columns}) for r in bad[:3])
        raise ConfigError(
            f"{table.name}: the partition date expression {part.source_expr!r} gives null for partition "
            f"value(s) {shown}; rows there would belong to no date: fix the expression "
            "(source.tables.<table>.date_expr)"
        )
    return {r["__d"] for r in rows}


def _snapshot_files(spark: SparkSession, table: Table) -> DataFrame | None:
    """The latest snapshot's file actions (path, partitionValues, stats) from the Delta log
    only; None (with a warning) when this session cannot reach Delta's JVM classes."""
    jvm: Any = getattr(spark, "_jvm", None)
    if jvm is None:
        log.warning(
            "%s: no JVM in this Spark session (Spark Connect?): per-file statistics unavailable", table.name
        )
        return None
    try:
        delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, table.path)
        none = jvm.scala.Option.empty()
        snapshot = delta_log.update(False, none, none)
        return DataFrame(snapshot.allFiles().toDF(), spark)
    except Py4JError as exc:
        log.warning("%s: cannot read Delta's file statistics (%s)", table.name, describe_error(exc))
        return None


def partitions_holding(spark: SparkSession, table: Table, column: str, value: int) -> set[dt.date]:
    """Partitions with at least one row whose integer ``column`` equals ``value``.

    Decided from the per-file min/max statistics Delta keeps (a file whose min or max is the
    value holds it; one whose range excludes it does not): no data file is opened. Only
    partitions with a file whose range merely straddles the value are checked by a query
    pruned to those partitions. Without the statistics the query covers every partition
    (a warning says so).
    """
    date_column = table.date_column
    if date_column is None:
        raise JobFailed(f"table {table.name!r} is not partitioned by date")
    if not exists(spark, table):
        return set()
    files = _snapshot_files(spark, table)
    if files is None:
        log.warning(
            "%s: finding the partitions that hold %s=%s by a query over every partition",
            table.name,
            column,
            value,
        )
        df, _ = read_table(spark, table)
        return set(_scan_dates(df.where(F.col(column) == value), date_column))
    stats = F.from_json(
        "stats", f"numRecords long, minValues struct<{column}: int>, maxValues struct<{column}: int>"
    )
    listed = files.select(
        F.col("partitionValues").getItem(date_column).alias("d"),
        stats.getField("numRecords").alias("n"),
        stats.getField("minValues").getField(column).alias("lo"),
        stats.getField("maxValues").getField(column).alias("hi"),
    ).collect()
    holding: set[dt.date] = set()
    unsure: set[dt.date] = set()
    for row in listed:
        if row["d"] is None or row["n"] == 0:
            continue
        day = dt.date.fromisoformat(row["d"])
        lo, hi = row["lo"], row["hi"]
        if lo is None or hi is None:
            unsure.add(day)
        elif value in (lo, hi):
            holding.add(day)
        elif lo < value < hi:
            unsure.add(day)
    unsure -= holding
    if unsure:
        df, _ = read_table(spark, table, dates=sorted(unsure))
        holding |= set(_scan_dates(df.where(F.col(column) == value), date_column))
    return holding
