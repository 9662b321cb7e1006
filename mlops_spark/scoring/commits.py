"""Writing predictions exactly once: which partitions a model version already scored, and
commits of a few partitions each that survive kills and concurrent runs.

* Incremental: `scored_partitions` decides from Delta's per-file statistics of
  ``model_version`` which partitions already hold predictions of a version, so finding one
  new day in a year opens no data file.
* Exactly once: partitions are written by ``replaceWhere`` in commits of at most
  ``partitions_per_commit`` days. A commit is atomic, so a run killed at any point leaves
  the table at its last commit and the next run scores exactly what is still missing; a
  rerun of a range replaces, never appends.
* Concurrency: writers of different partitions do not conflict (the predicate is on the
  partition column only). When two runs write the same partition, Delta lets one commit;
  the other re-checks what is still unscored and retries, or fails cleanly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from mlops_spark import lake
from mlops_spark.catalog import Table
from mlops_spark.lake.retry import write_partitions_retrying

ARROW_BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"


def commit_batches(
    rows_by_day: Mapping[dt.date, int], rows_per_commit: int, days_per_commit: int | None = None
) -> list[list[dt.date]]:
    """Consecutive days, oldest first, grouped into commits of at most ``rows_per_commit``
    rows (a day bigger than that is a commit of its own) and ``days_per_commit`` days."""
    batches: list[list[dt.date]] = []
    current: list[dt.date] = []
    rows = 0
    for day in sorted(rows_by_day):
        n = rows_by_day[day]
        full = current and (
            rows + n > rows_per_commit or (days_per_commit and len(current) >= days_per_commit)
        )
        if full:
            batches.append(current)
            current, rows = [], 0
        current.append(day)
        rows += n
    if current:
        batches.append(current)
    return batches


def rows_per_day(df: DataFrame, date_column: str, dates: Sequence[dt.date]) -> dict[dt.date, int]:
    """Rows of each of ``dates`` (one aggregation over those partitions); 0 for an empty day.

    One day is one commit whatever its size, so it is not counted (the daily run's single
    new partition is then read once, by the scoring query alone).
    """
    if len(dates) == 1:
        return {dates[0]: 0}
    counted = {
        r[0]: int(r[1])
        for r in df.where(lake.partition_filter(date_column, dates=dates))
        .groupBy(date_column)
        .count()
        .collect()
    }
    return {d: counted.get(d, 0) for d in dates}


def scored_partitions(spark: SparkSession, predictions: Table, versions: Sequence[int]) -> set[dt.date]:
    """Partitions of ``predictions`` that hold rows of any of the model ``versions``."""
    done: set[dt.date] = set()
    for version in versions:
        done |= lake.partitions_holding(spark, predictions, "model_version", version)
    return done


@contextmanager
def session_conf(spark: SparkSession, settings: dict[str, str]) -> Iterator[None]:
    """Runtime SQL settings for the duration of a block, restored afterwards."""
    previous: dict[str, str | None] = {k: spark.conf.get(k, None) for k in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in previous.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


def write_in_commits(
    scored: DataFrame,
    table: Table,
    batches: Sequence[Sequence[dt.date]],
    user_metadata: str,
    still_pending: Callable[[list[dt.date]], list[dt.date]] | None,
    merge_schema: bool,
    say: Callable[[str], None],
) -> list[lake.WriteResult]:
    """Replace ``table``'s partitions with ``scored``, one commit per batch of days, oldest
    first; each retried on Delta conflicts (``still_pending`` narrows a retry to what a
    concurrent run has not done).

    With more than one commit, ``scored`` is computed once (persisted, then released) and
    each commit writes its days from that: the model, however large its plan (a compiled
    forest), runs once per job, not once per commit.
    """
    date_column = table.date_column
    assert date_column is not None
    once = len(batches) > 1
    if once:
        scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
        scored.count()

    def rows_for(dates: Sequence[dt.date]) -> DataFrame:
        return scored.where(lake.partition_filter(date_column, dates=dates))

    results = []
    try:
        for batch in batches:
            result = write_partitions_retrying(
                rows_for,
                table,
                list(batch),
                user_metadata,
                still_pending=still_pending,
                merge_schema=merge_schema,
                say=say,
            )
            if result is not None:
                results.append(result)
                if once:
                    say(f"{table.name}: committed {result.describe()}")
    finally:
        if once:
            scored.unpersist()
    return results
