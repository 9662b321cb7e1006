"""lake.py: the one place that reads and writes Delta, on real tables in a temp folder."""

from __future__ import annotations

import datetime as dt
import glob
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.testing import assertDataFrameEqual

from mlops_spark import lake
from mlops_spark.errors import JobFailed, MissingColumnError, TableNotFoundError

D1, D2, D3 = dt.date(2020, 1, 1), dt.date(2020, 1, 2), dt.date(2020, 1, 3)
SCHEMA = "id int, date date, v string"


def rows(spark: SparkSession, data: list[tuple[object, ...]]) -> DataFrame:
    return spark.createDataFrame(data, SCHEMA)


def test_write_partitions_replaces_exactly_its_dates(spark: SparkSession, lake_root: str) -> None:
    path = f"{lake_root}/t"
    first = lake.write_partitions(
        rows(spark, [(1, D1, "a"), (2, D2, "b")]), path, "date", [D1, D2], "t", "first write"
    )
    assert (first.version, first.rows_written, first.files_added, first.partitions) == (0, 2, 2, (D1, D2))
    assert lake.last_user_metadata(spark, path) == "first write"

    # D2 again (a rerun) and D3 new: D1 untouched, D2 replaced, nothing appended twice
    second = lake.write_partitions(rows(spark, [(3, D2, "b2"), (4, D3, "c")]), path, "date", [D2, D3], "t")
    assert (second.version, second.rows_written, second.files_added, second.files_removed) == (1, 2, 2, 1)
    df, ref = lake.read_table(spark, path, "t")
    assert ref == lake.TableRef("t", path, 1)
    assertDataFrameEqual(df, rows(spark, [(1, D1, "a"), (3, D2, "b2"), (4, D3, "c")]))
    assert lake.list_partitions(spark, path, "date") == [D1, D2, D3]
    assert lake.list_partitions(spark, path, "date", version=0) == [D1, D2]
    assert "t v1 (2 rows, 2 partition(s))" == second.describe()


def test_a_write_outside_its_dates_is_refused(spark: SparkSession, lake_root: str) -> None:
    path = f"{lake_root}/t"
    lake.write_partitions(rows(spark, [(1, D1, "a")]), path, "date", [D1])
    with pytest.raises(Exception, match=r"DELTA_REPLACE_WHERE_MISMATCH|replaceWhere|does not conform"):
        lake.write_partitions(rows(spark, [(2, D2, "b")]), path, "date", [D1])
    assert lake.current_version(spark, path) == 0
    with pytest.raises(JobFailed, match="called with no dates"):
        lake.write_partitions(rows(spark, [(2, D2, "b")]), path, "date", [])
    with pytest.raises(MissingColumnError, match="has no column 'day'"):
        lake.write_partitions(rows(spark, [(2, D2, "b")]), path, "day", [D2])


def test_read_table_pins_versions_and_filters_partitions(spark: SparkSession, lake_root: str) -> None:
    path = f"{lake_root}/t"
    lake.write_partitions(rows(spark, [(1, D1, "a"), (2, D2, "b")]), path, "date", [D1, D2])
    lake.write_partitions(rows(spark, [(3, D2, "z")]), path, "date", [D2])
    old, ref = lake.read_table(spark, path, "t", version=0, date_column="date", dates=[D2])
    assert ref.version == 0
    assertDataFrameEqual(old, rows(spark, [(2, D2, "b")]))
    ranged, _ = lake.read_table(spark, path, "t", date_column="date", date_range=(D2, D3))
    assertDataFrameEqual(ranged, rows(spark, [(3, D2, "z")]))
    with pytest.raises(JobFailed, match=r"table 't' has no version 5 \(latest is 1\)"):
        lake.read_table(spark, path, "t", version=5)
    with pytest.raises(TableNotFoundError, match=r"table 'nope' does not exist at .*/nope"):
        lake.read_table(spark, f"{lake_root}/nope", "nope")
    assert lake.list_partitions(spark, f"{lake_root}/nope", "date") == []
    assert lake.current_version(spark, f"{lake_root}/nope") is None


def test_corrupt_log_is_a_job_failure_naming_the_table(spark: SparkSession, lake_root: str) -> None:
    path = f"{lake_root}/t"
    lake.write_partitions(rows(spark, [(1, D1, "a")]), path, "date", [D1])
    [commit] = glob.glob(f"{path}/_delta_log/*.json")
    Path(commit).write_text("{not json")
    with pytest.raises(JobFailed, match=r"table 't' at .*/t cannot be read: .*restore the table"):
        lake.read_table(spark, path, "t")


def test_partitions_are_listed_without_reading_data_files(spark: SparkSession, lake_root: str) -> None:
    """A corrupt data file does not break the listing (only the log is read)."""
    path = f"{lake_root}/t"
    lake.write_partitions(rows(spark, [(1, D1, "a"), (2, D3, "c")]), path, "date", [D1, D3])
    for data_file in glob.glob(f"{path}/date=*/*.parquet"):
        Path(data_file).write_bytes(b"garbage")
    assert lake.list_partitions(spark, path, "date") == [D1, D3]


def test_dates_from_file_paths() -> None:
    files = [
        "file:/lake/t/date=2020-01-02/part-0.parquet",
        "s3a://b/lake/t/date=2020-01-01/part-1.parquet",
        "file:/lake/t/date=__HIVE_DEFAULT_PARTITION__/part-2.parquet",
        "file:/lake/t/date=2020-01-02/part-3.parquet",
    ]
    assert lake._dates_from_file_paths(files, "date") == [D1, D2]
    assert lake._dates_from_file_paths(["file:/lake/t/ab/part-0.parquet"], "date") is None
    assert lake._dates_from_file_paths(["file:/lake/t/date=soon/part-0.parquet"], "date") is None
    assert lake._dates_from_file_paths([], "date") == []


def test_restore_and_delete_undo_writes(spark: SparkSession, lake_root: str) -> None:
    path = f"{lake_root}/t"
    lake.write_partitions(rows(spark, [(1, D1, "a")]), path, "date", [D1])
    lake.write_partitions(rows(spark, [(2, D2, "b")]), path, "date", [D2])
    restored = lake.restore_version(spark, path, 0, "t")
    assert (restored.version, restored.operation) == (2, "RESTORE")
    assertDataFrameEqual(lake.read_table(spark, path)[0], rows(spark, [(1, D1, "a")]))

    lake.write_partitions(rows(spark, [(2, D2, "b"), (3, D3, "c")]), path, "date", [D2, D3])
    deleted = lake.delete_partitions(spark, path, "date", [D2, D3], "t")
    assert deleted.operation == "DELETE"
    assertDataFrameEqual(lake.read_table(spark, path)[0], rows(spark, [(1, D1, "a")]))
    lake.delete_partitions(spark, path, "date", None)
    assert lake.read_table(spark, path)[0].count() == 0


def test_overwrite_and_append(spark: SparkSession, lake_root: str) -> None:
    path = f"{lake_root}/dim"
    lake.overwrite_table(spark.createDataFrame([(1, "a")], "k int, v string"), path, "dim", "v1")
    result = lake.overwrite_table(spark.createDataFrame([(2, 3.5)], "k int, w double"), path, "dim")
    assert (result.version, result.rows_written) == (1, 1)
    assertDataFrameEqual(
        lake.read_table(spark, path)[0], spark.createDataFrame([(2, 3.5)], "k int, w double")
    )
    log = f"{lake_root}/log"
    lake.append_rows(spark.createDataFrame([(1,)], "n int"), log)
    lake.append_rows(spark.createDataFrame([(2, "x")], "n int, extra string"), log)
    assert sorted(tuple(r) for r in lake.read_table(spark, log)[0].collect()) == [(1, None), (2, "x")]
    assert lake.history(spark, log).count() == 2


def test_describe_error_gives_one_line_with_the_error_class(spark: SparkSession, lake_root: str) -> None:
    path = f"{lake_root}/t"
    lake.write_partitions(rows(spark, [(1, D1, "a")]), path, "date", [D1])
    for data_file in glob.glob(f"{path}/date=*/*.parquet"):
        Path(data_file).write_bytes(b"garbage")
    with pytest.raises(Exception) as err:
        lake.read_table(spark, path)[0].collect()
    line = lake.describe_error(err.value)
    assert line.startswith("[FAILED_READ_FILE") and "\n" not in line and len(line) <= 400
    assert lake.describe_error(ValueError("plain message\nsecond line")) == "plain message"
    assert lake.describe_error(RuntimeError()) == "RuntimeError"
