"""The one module that reads and writes Delta tables.

Writes are idempotent by construction: date-partitioned tables are written by replacing
exactly the partitions being produced (``replaceWhere``), in one Delta commit, so a rerun
replaces instead of appending, and a job killed before the commit leaves the previous
version intact. Every write reports the table version it produced and Delta's own commit
metrics (rows and files written, files removed).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.errors import JobFailed, MissingColumnError, TableNotFoundError


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


def is_table(spark: SparkSession, path: str) -> bool:
    try:
        return bool(DeltaTable.isDeltaTable(spark, path))
    except Exception:
        return False


def current_version(spark: SparkSession, path: str) -> int | None:
    """The latest committed version, or None when there is no table."""
    if not is_table(spark, path):
        return None
    row = DeltaTable.forPath(spark, path).history(1).select("version").first()
    return int(row["version"]) if row else None


def read_table(
    spark: SparkSession,
    path: str,
    name: str | None = None,
    version: int | None = None,
    date_column: str | None = None,
    dates: Iterable[dt.date] | None = None,
    date_range: tuple[dt.date, dt.date] | None = None,
) -> tuple[DataFrame, TableRef]:
    """Read a table (optionally a pinned version and some partitions) and say which version.

    The version is resolved before reading, so the returned TableRef names exactly the
    snapshot the DataFrame reads even if a writer commits in between.
    """
    name = name or path
    try:
        latest = current_version(spark, path)
    except Exception as exc:  # a corrupt or unreadable _delta_log
        raise JobFailed(
            f"table {name!r} at {path} cannot be read: {describe_error(exc)}; "
            "restore the table (or its _delta_log) or rewrite it with the job that produces it"
        ) from None
    if latest is None:
        raise TableNotFoundError(name, path, "run the job that writes it first")
    pinned = latest if version is None else version
    if pinned > latest or pinned < 0:
        raise JobFailed(f"table {name!r} has no version {pinned} (latest is {latest})")
    df = spark.read.format("delta").option("versionAsOf", pinned).load(path)
    if dates is not None or date_range is not None:
        if not date_column:
            raise JobFailed(f"table {name!r}: a date filter needs the date column")
        require_columns(df, name, [date_column])
        df = df.where(partition_filter(date_column, dates=dates, date_range=date_range))
    return df, TableRef(name=name, path=path, version=pinned)


def partition_filter(
    date_column: str,
    dates: Iterable[dt.date] | None = None,
    date_range: tuple[dt.date, dt.date] | None = None,
) -> Column:
    """A predicate Spark pushes down to Delta's partition pruning."""
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


def write_partitions(
    df: DataFrame,
    path: str,
    date_column: str,
    dates: Sequence[dt.date],
    name: str | None = None,
    user_metadata: str | None = None,
    merge_schema: bool = False,
) -> WriteResult:
    """Replace exactly ``dates`` of a date-partitioned table with ``df``, in one commit.

    Rows of ``df`` outside ``dates`` make Delta refuse the write (its replaceWhere
    constraint check), so a bug cannot overwrite partitions it did not mean to.
    """
    name = name or path
    if not dates:
        raise JobFailed(f"table {name!r}: write_partitions called with no dates")
    require_columns(df, name, [date_column])
    spark = df.sparkSession
    # one task per date: each partition gets one file instead of one per upstream task
    writer = df.repartition(F.col(date_column)).write.format("delta")
    if user_metadata:
        writer = writer.option("userMetadata", user_metadata)
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    if is_table(spark, path):
        (writer.mode("overwrite").option("replaceWhere", _replace_where_sql(date_column, dates)).save(path))
    else:
        writer.mode("overwrite").partitionBy(date_column).save(path)
    return last_commit(spark, path, name, tuple(sorted(set(dates))))


def overwrite_table(
    df: DataFrame, path: str, name: str | None = None, user_metadata: str | None = None
) -> WriteResult:
    """Replace a whole (small, unpartitioned) table in one commit."""
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if user_metadata:
        writer = writer.option("userMetadata", user_metadata)
    writer.save(path)
    return last_commit(df.sparkSession, path, name or path)


def append_rows(df: DataFrame, path: str, name: str | None = None, attempts: int = 5) -> WriteResult:
    """Append (only for logs such as the jobs audit table, where every run is a new row).

    Appends never conflict with each other once the table exists, but two first appends
    both try to create it; the loser retries against the table the winner created.
    """
    for attempt in range(1, attempts + 1):
        try:
            df.write.format("delta").mode("append").option("mergeSchema", "true").save(path)
            break
        except Exception as exc:
            if attempt == attempts or not is_write_conflict(exc):
                raise
            time.sleep(0.2 * attempt)
    return last_commit(df.sparkSession, path, name or path)


def ensure_partitioned_table(
    spark: SparkSession, path: str, date_column: str, schema: T.StructType, wait_seconds: float = 60.0
) -> None:
    """Create an empty table partitioned by ``date_column`` unless one exists.

    With the table created first, every later write is a replaceWhere of its own
    partitions, so two first runs on different partitions both land (an overwrite that
    creates the table could replace what a concurrent first run had just committed). When
    two processes create it at once, the loser waits for the winner's first commit.
    """
    if is_table(spark, path):
        return
    nullable = T.StructType([T.StructField(f.name, f.dataType, True) for f in schema])  # as Delta writes
    try:
        DeltaTable.createIfNotExists(spark).location(path).addColumns(nullable).partitionedBy(
            date_column
        ).execute()
        return
    except Exception as exc:
        failure = exc
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:  # a lost creation race: the winner's commit is on its way
        if is_table(spark, path):
            return
        time.sleep(0.5)
    raise failure


CONFLICT_MARKERS = (
    "DELTA_CONCURRENT",
    "ConcurrentAppendException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "ConcurrentTransactionException",
    "ConcurrentWriteException",
    "DELTA_PROTOCOL_CHANGED",
    "DELTA_METADATA_CHANGED",
)


def is_write_conflict(exc: BaseException) -> bool:
    """True for Delta's optimistic-concurrency conflicts (another writer committed first)."""
    from delta.exceptions import DeltaConcurrentModificationException

    if isinstance(exc, DeltaConcurrentModificationException):
        return True
    text = str(exc)
    return any(marker in text for marker in CONFLICT_MARKERS)


def last_commit(
    spark: SparkSession, path: str, name: str, partitions: tuple[dt.date, ...] = ()
) -> WriteResult:
    row = DeltaTable.forPath(spark, path).history(1).first()
    assert row is not None
    metrics: dict[str, Any] = dict(row["operationMetrics"] or {})
    return WriteResult(
        name=name,
        path=path,
        version=int(row["version"]),
        operation=str(row["operation"]),
        rows_written=int(metrics.get("numOutputRows", 0)),
        files_added=int(metrics.get("numFiles", metrics.get("numAddedFiles", 0))),
        files_removed=int(metrics.get("numRemovedFiles", 0)),
        partitions=partitions,
    )


def list_partitions(
    spark: SparkSession, path: str, date_column: str, version: int | None = None
) -> list[dt.date]:
    """The dates present in a date-partitioned table (empty when there is no table).

    Reads Delta's file list through the table's metadata (only the partition column is
    selected, so no data column is scanned).
    """
    if not is_table(spark, path):
        return []
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    df = reader.load(path)
    from_files = _dates_from_file_paths(df.inputFiles(), date_column)
    if from_files is not None:
        return from_files
    rows = df.select(date_column).distinct().collect()
    return sorted(r[0] for r in rows if r[0] is not None)


def _dates_from_file_paths(files: Sequence[str], date_column: str) -> list[dt.date] | None:
    """Partition dates from the snapshot's file paths (``.../date=2013-01-01/part-...``).

    Delta lists a snapshot's files from its log, so no data file is opened (a corrupt file
    cannot break the listing, and a year of partitions costs no scan). None when a path does
    not carry the partition (e.g. column mapping), so the caller scans instead.
    """
    dates: set[dt.date] = set()
    marker = f"/{date_column}="
    for file in files:
        at = file.rfind(marker)
        if at < 0:
            return None
        value = unquote(file[at + len(marker) :].split("/", 1)[0])
        if value == "__HIVE_DEFAULT_PARTITION__":
            continue
        try:
            dates.add(dt.date.fromisoformat(value))
        except ValueError:
            return None
    return sorted(dates)


def last_user_metadata(spark: SparkSession, path: str) -> str | None:
    """The userMetadata of the latest commit (jobs record what a write was made from)."""
    if not is_table(spark, path):
        return None
    row = DeltaTable.forPath(spark, path).history(1).select("userMetadata").first()
    return row[0] if row else None


def history(spark: SparkSession, path: str, limit: int | None = None) -> DataFrame:
    table = DeltaTable.forPath(spark, path)
    return table.history(limit) if limit else table.history()


def restore_version(spark: SparkSession, path: str, version: int, name: str | None = None) -> WriteResult:
    """Make ``version`` the table's content again (a new RESTORE commit); used to undo a write."""
    DeltaTable.forPath(spark, path).restoreToVersion(version)
    return last_commit(spark, path, name or path)


def delete_partitions(
    spark: SparkSession, path: str, date_column: str, dates: Sequence[dt.date] | None, name: str | None = None
) -> WriteResult:
    """Delete the rows of ``dates`` (every row when None) in one commit; used to undo a first write."""
    table = DeltaTable.forPath(spark, path)
    if dates is None:
        table.delete()
    else:
        table.delete(F.expr(_replace_where_sql(date_column, dates)))
    return last_commit(spark, path, name or path)


_ERROR_CLASS = re.compile(r"\[[A-Z][A-Z0-9_.]+\][^\n]*")


def describe_error(exc: BaseException) -> str:
    """One readable line for a Spark / Py4J / Delta error (its error class and message).

    A Py4J error's text starts with "An error occurred while calling o123.collect" and ends
    with a Java stack trace; the useful part is the line with the error class, e.g.
    ``[FAILED_READ_FILE.NO_HINT] Encountered error while reading file ...``.
    """
    text = str(exc)
    match = _ERROR_CLASS.search(text)
    if match:
        line = match.group(0)
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        useful = [ln for ln in lines if not ln.startswith(("An error occurred while calling", "at "))]
        line = (useful or lines or [type(exc).__name__])[0]
        line = line.lstrip(": ")
    line = re.sub(r"\s+", " ", line).strip()
    return line if len(line) <= 400 else line[:397] + "..."
