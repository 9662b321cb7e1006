"""Reading and writing Delta tables.

Writes are idempotent by construction: date-partitioned tables are written by replacing
exactly the partitions being produced (``replaceWhere``), in one Delta commit, so a rerun
replaces instead of appending, and a job killed before the commit leaves the previous
version intact. Every write reports the table version it produced and Delta's own commit
metrics (rows and files written, files removed).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.catalog import Table
from mlops_spark.errors import SPARK_ERRORS, JobFailed, MissingColumnError, TableNotFoundError, describe_error
from mlops_spark.lake.conflicts import is_write_conflict


@dataclass(frozen=True)
class TableRef:
    """A table read by a job: its name, path and the exact version that was read."""

    name: str
    path: str
    version: int


@dataclass(frozen=True)
class WriteResult:
    """What one Delta commit did."""

    name: str
    path: str
    version: int
    operation: str
    rows_written: int
    files_added: int
    files_removed: int
    partitions: tuple[dt.date, ...] = field(default=())

    def describe(self) -> str:
        parts = f", {len(self.partitions)} partition(s)" if self.partitions else ""
        return f"{self.name} v{self.version} ({self.rows_written:,} rows{parts})"


def exists(spark: SparkSession, table: Table) -> bool:
    """True when a Delta table is at the table's location.

    ``isDeltaTable`` answers from the session's cached log of the path: once it has seen the
    location without a commit (a creation race lost to another process), it keeps saying
    False after the other process committed. A False is therefore checked against the log
    itself (``forPath`` refreshes the cache).
    """
    if DeltaTable.isDeltaTable(spark, table.path):
        return True
    try:
        return DeltaTable.forPath(spark, table.path).history(1).first() is not None
    except Exception:  # no table (or no readable log) at the path: not a Delta table
        return False


def current_version(spark: SparkSession, table: Table) -> int | None:
    """The latest committed version, or None when there is no table."""
    if not exists(spark, table):
        return None
    row = DeltaTable.forPath(spark, table.path).history(1).select("version").first()
    return int(row["version"]) if row else None


def _raw(spark: SparkSession, table: Table, version: int | None) -> DataFrame:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    df = reader.load(table.path)
    part = table.partitioning
    if part is not None and part.source_expr is not None:
        df = df.withColumn(part.date_column, F.expr(part.source_expr).cast("date"))
    return df


def read_table(
    spark: SparkSession,
    table: Table,
    version: int | None = None,
    dates: Iterable[dt.date] | None = None,
    date_range: tuple[dt.date, dt.date] | None = None,
) -> tuple[DataFrame, TableRef]:
    """Read a table (optionally a pinned version and some partitions) and say which version.

    The version is resolved before reading, so the returned TableRef names exactly the
    snapshot the DataFrame reads even if a writer commits in between. Date filters are
    written on the partition date, so Delta reads only those partitions.
    """
    try:
        latest = current_version(spark, table)
    except SPARK_ERRORS as exc:  # a corrupt or unreadable _delta_log
        raise JobFailed(
            f"table {table.name!r} at {table.path} cannot be read: {describe_error(exc)}; "
            "restore the table (or its _delta_log) or rewrite it with the job that produces it"
        ) from None
    if latest is None:
        hint = "check source.tables.<table>.path" if table.foreign else "run the job that writes it first"
        raise TableNotFoundError(table.name, table.path, hint)
    pinned = version if version is not None else (table.version if table.version is not None else latest)
    if pinned > latest or pinned < 0:
        raise JobFailed(f"table {table.name!r} has no version {pinned} (latest is {latest})")
    df = _raw(spark, table, pinned)
    if dates is not None or date_range is not None:
        if table.date_column is None:
            raise JobFailed(f"table {table.name!r} is not partitioned by date: it cannot be read by dates")
        require_columns(df, table.name, [table.date_column])
        df = df.where(partition_filter(table.date_column, dates=dates, date_range=date_range))
    return df, TableRef(name=table.name, path=table.path, version=pinned)


def partition_filter(
    date_column: str,
    dates: Iterable[dt.date] | None = None,
    date_range: tuple[dt.date, dt.date] | None = None,
) -> Column:
    """A predicate on the partition date that Spark pushes down to Delta's partition pruning."""
    col = F.col(date_column)
    cond = F.lit(True)
    if dates is not None:
        cond = cond & col.isin([F.lit(d) for d in sorted(set(dates))])
    if date_range is not None:
        cond = cond & col.between(F.lit(date_range[0]), F.lit(date_range[1]))
    return cond


def _replace_where_sql(date_column: str, dates: Sequence[dt.date]) -> str:
    listed = ", ".join(f"DATE'{d.isoformat()}'" for d in sorted(set(dates)))
    return f"`{date_column}` IN ({listed})"


def require_columns(df: DataFrame, table: str, columns: Iterable[str]) -> None:
    have = set(df.columns)
    for column in columns:
        if column not in have:
            raise MissingColumnError(table, column, list(have))


def _native_date_column(table: Table) -> str:
    if table.foreign:
        raise JobFailed(
            f"table {table.name!r} at {table.path} is adopted in place: this framework never writes it"
        )
    part = table.partitioning
    if part is None:
        raise JobFailed(f"table {table.name!r} is not partitioned by date: write it whole")
    if not part.native:
        raise JobFailed(
            f"table {table.name!r} is partitioned by {part.source_expr!r} (a foreign table adopted in "
            "place): this framework reads it but never writes it"
        )
    return part.date_column


def write_partitions(
    df: DataFrame,
    table: Table,
    dates: Sequence[dt.date],
    user_metadata: str | None = None,
    merge_schema: bool = False,
) -> WriteResult:
    """Replace exactly ``dates`` of a date-partitioned table with ``df``, in one commit.

    Rows of ``df`` outside ``dates`` make Delta refuse the write (its replaceWhere
    constraint check), so a bug cannot overwrite partitions it did not mean to.
    """
    date_column = _native_date_column(table)
    if not dates:
        raise JobFailed(f"table {table.name!r}: write_partitions called with no dates")
    require_columns(df, table.name, [date_column])
    spark = df.sparkSession
    # one task per date: each partition gets one file instead of one per upstream task
    writer = df.repartition(F.col(date_column)).write.format("delta")
    if user_metadata:
        writer = writer.option("userMetadata", user_metadata)
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    if exists(spark, table):
        writer.mode("overwrite").option("replaceWhere", _replace_where_sql(date_column, dates)).save(
            table.path
        )
    else:
        writer.mode("overwrite").partitionBy(date_column).save(table.path)
    return last_commit(spark, table, tuple(sorted(set(dates))))


def overwrite_table(df: DataFrame, table: Table, user_metadata: str | None = None) -> WriteResult:
    """Replace a whole (small, unpartitioned) table in one commit."""
    if table.foreign:
        raise JobFailed(
            f"table {table.name!r} at {table.path} is adopted in place: this framework never writes it"
        )
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if user_metadata:
        writer = writer.option("userMetadata", user_metadata)
    writer.save(table.path)
    return last_commit(df.sparkSession, table)


def append_rows(df: DataFrame, table: Table, attempts: int = 5) -> WriteResult:
    """Append (only for logs such as the jobs audit table, where every run is a new row).

    Appends never conflict with each other once the table exists, but two first appends
    both try to create it; the loser retries against the table the winner created.
    """
    for attempt in range(1, attempts + 1):
        try:
            df.write.format("delta").mode("append").option("mergeSchema", "true").save(table.path)
            break
        except Exception as exc:  # only Delta's conflicts are retried; the rest is re-raised
            if attempt == attempts or not is_write_conflict(exc):
                raise
            time.sleep(0.2 * attempt)
    return last_commit(df.sparkSession, table)


def ensure_partitioned_table(
    spark: SparkSession, table: Table, schema: T.StructType, wait_seconds: float = 60.0
) -> None:
    """Create an empty table partitioned by its date column unless one exists.

    With the table created first, every later write is a replaceWhere of its own
    partitions, so two first runs on different partitions both land (an overwrite that
    creates the table could replace what a concurrent first run had just committed). When
    two processes create it at once, the loser waits for the winner's first commit.
    """
    date_column = _native_date_column(table)
    if exists(spark, table):
        return
    nullable = T.StructType([T.StructField(f.name, f.dataType, True) for f in schema])  # as Delta writes
    try:
        DeltaTable.createIfNotExists(spark).location(table.path).addColumns(nullable).partitionedBy(
            date_column
        ).execute()
        return
    except Exception as exc:  # a lost creation race, re-raised unless the winner's table appears
        failure = exc
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if exists(spark, table):
            return
        time.sleep(0.5)
    raise failure


def last_commit(spark: SparkSession, table: Table, partitions: tuple[dt.date, ...] = ()) -> WriteResult:
    """What the table's newest commit did (its version, operation and Delta's own metrics)."""
    row = DeltaTable.forPath(spark, table.path).history(1).first()
    if row is None:
        raise JobFailed(f"table {table.name!r} has no commit after a write")
    metrics: dict[str, Any] = dict(row["operationMetrics"] or {})
    return WriteResult(
        name=table.name,
        path=table.path,
        version=int(row["version"]),
        operation=str(row["operation"]),
        rows_written=int(metrics.get("numOutputRows", 0)),
        files_added=int(metrics.get("numFiles", metrics.get("numAddedFiles", 0))),
        files_removed=int(metrics.get("numRemovedFiles", 0)),
        partitions=partitions,
    )


def last_user_metadata(spark: SparkSession, table: Table) -> str | None:
    """The userMetadata of the latest commit (jobs record what a write was made from)."""
    if not exists(spark, table):
        return None
    row = DeltaTable.forPath(spark, table.path).history(1).select("userMetadata").first()
    return None if row is None or row[0] is None else str(row[0])


def history(spark: SparkSession, table: Table, limit: int | None = None) -> DataFrame:
    delta = DeltaTable.forPath(spark, table.path)
    return delta.history(limit) if limit else delta.history()


def restore_version(spark: SparkSession, table: Table, version: int) -> WriteResult:
    """Make ``version`` the table's content again (a new RESTORE commit); used to undo a write."""
    DeltaTable.forPath(spark, table.path).restoreToVersion(version)
    return last_commit(spark, table)


def delete_partitions(spark: SparkSession, table: Table, dates: Sequence[dt.date] | None) -> WriteResult:
    """Delete the rows of ``dates`` (every row when None) in one commit; used to undo a first write."""
    delta = DeltaTable.forPath(spark, table.path)
    if dates is None:
        delta.delete()
    else:
        delta.delete(F.expr(_replace_where_sql(_native_date_column(table), dates)))
    return last_commit(spark, table)
