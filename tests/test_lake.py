"""lake: the one package that reads and writes Delta, on real tables in a temp folder."""

from __future__ import annotations

import datetime as dt
import glob
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.testing import assertDataFrameEqual

from mlops_spark import lake
from mlops_spark.catalog import Partitioning, Table
from mlops_spark.errors import JobFailed, MissingColumnError, TableNotFoundError, describe_error
from mlops_spark.lake.partitions import iso_dates, partition_values_from_paths

D1, D2, D3 = dt.date(2020, 1, 1), dt.date(2020, 1, 2), dt.date(2020, 1, 3)
SCHEMA = "id int, date date, v string"


def rows(spark: SparkSession, data: list[tuple[object, ...]]) -> DataFrame:
    return spark.createDataFrame(data, SCHEMA)


def dated(lake_root: str, name: str = "t", column: str = "date") -> Table:
    return Table(name, f"{lake_root}/{name}", Partitioning(column))


def test_write_partitions_replaces_exactly_its_dates(spark: SparkSession, lake_root: str) -> None:
    t = dated(lake_root)
    first = lake.write_partitions(rows(spark, [(1, D1, "a"), (2, D2, "b")]), t, [D1, D2], "first write")
    assert (first.version, first.rows_written, first.files_added, first.partitions) == (0, 2, 2, (D1, D2))
    assert lake.last_user_metadata(spark, t) == "first write"

    # D2 again (a rerun) and D3 new: D1 untouched, D2 replaced, nothing appended twice
    second = lake.write_partitions(rows(spark, [(3, D2, "b2"), (4, D3, "c")]), t, [D2, D3])
    assert (second.version, second.rows_written, second.files_added, second.files_removed) == (1, 2, 2, 1)
    df, ref = lake.read_table(spark, t)
    assert ref == lake.TableRef("t", t.path, 1)
    assertDataFrameEqual(df, rows(spark, [(1, D1, "a"), (3, D2, "b2"), (4, D3, "c")]))
    assert lake.list_partitions(spark, t) == [D1, D2, D3]
    assert lake.list_partitions(spark, t, version=0) == [D1, D2]
    assert "t v1 (2 rows, 2 partition(s))" == second.describe()


def test_a_write_outside_its_dates_is_refused(spark: SparkSession, lake_root: str) -> None:
    t = dated(lake_root)
    lake.write_partitions(rows(spark, [(1, D1, "a")]), t, [D1])
    with pytest.raises(Exception, match=r"DELTA_REPLACE_WHERE_MISMATCH|replaceWhere|does not conform"):
        lake.write_partitions(rows(spark, [(2, D2, "b")]), t, [D1])
    assert lake.current_version(spark, t) == 0
    with pytest.raises(JobFailed, match="called with no dates"):
        lake.write_partitions(rows(spark, [(2, D2, "b")]), t, [])
    with pytest.raises(MissingColumnError, match="has no column 'day'"):
        lake.write_partitions(rows(spark, [(2, D2, "b")]), dated(lake_root, column="day"), [D2])


def test_read_table_pins_versions_and_filters_partitions(spark: SparkSession, lake_root: str) -> None:
    t = dated(lake_root)
    lake.write_partitions(rows(spark, [(1, D1, "a"), (2, D2, "b")]), t, [D1, D2])
    lake.write_partitions(rows(spark, [(3, D2, "z")]), t, [D2])
    old, ref = lake.read_table(spark, t, version=0, dates=[D2])
    assert ref.version == 0
    assertDataFrameEqual(old, rows(spark, [(2, D2, "b")]))
    ranged, _ = lake.read_table(spark, t, date_range=(D2, D3))
    assertDataFrameEqual(ranged, rows(spark, [(3, D2, "z")]))
    with pytest.raises(JobFailed, match=r"table 't' has no version 5 \(latest is 1\)"):
        lake.read_table(spark, t, version=5)
    with pytest.raises(TableNotFoundError, match=r"table 'nope' does not exist at .*/nope"):
        lake.read_table(spark, dated(lake_root, "nope"))
    assert lake.list_partitions(spark, dated(lake_root, "nope")) == []
    assert lake.current_version(spark, dated(lake_root, "nope")) is None


def test_corrupt_log_is_a_job_failure_naming_the_table(spark: SparkSession, lake_root: str) -> None:
    t = dated(lake_root)
    lake.write_partitions(rows(spark, [(1, D1, "a")]), t, [D1])
    [commit] = glob.glob(f"{t.path}/_delta_log/*.json")
    Path(commit).write_text("{not json")
    with pytest.raises(JobFailed, match=r"table 't' at .*/t cannot be read: .*restore the table"):
        lake.read_table(spark, t)


def test_partitions_are_listed_without_reading_data_files(spark: SparkSession, lake_root: str) -> None:
    """A corrupt data file does not break the listing (only the log is read)."""
    t = dated(lake_root)
    lake.write_partitions(rows(spark, [(1, D1, "a"), (2, D3, "c")]), t, [D1, D3])
    for data_file in glob.glob(f"{t.path}/date=*/*.parquet"):
        Path(data_file).write_bytes(b"garbage")
    assert lake.list_partitions(spark, t) == [D1, D3]


def test_partition_values_from_file_paths() -> None:
    files = [
        "file:/lake/t/date=2020-01-02/part-0.parquet",
        "s3a://b/lake/t/date=2020-01-01/part-1.parquet",
        "file:/lake/t/date=__HIVE_DEFAULT_PARTITION__/part-2.parquet",
        "file:/lake/t/day=2020-01-03/hour=10%3A00/part-3.parquet",
    ]
    assert partition_values_from_paths(files[:3], ["date"]) == [
        {"date": "2020-01-02"},
        {"date": "2020-01-01"},
        {"date": None},
    ]
    assert partition_values_from_paths(files[3:], ["day", "hour"]) == [{"day": "2020-01-03", "hour": "10:00"}]
    assert partition_values_from_paths(["file:/lake/t/ab/part-0.parquet"], ["date"]) is None
    assert partition_values_from_paths([], ["date"]) == []
    assert iso_dates(["2020-01-02", None, "2020-01-01", "2020-01-02"]) == [D1, D2]
    assert iso_dates(["2020-01-02", "soon"]) is None


def test_restore_and_delete_undo_writes(spark: SparkSession, lake_root: str) -> None:
    t = dated(lake_root)
    lake.write_partitions(rows(spark, [(1, D1, "a")]), t, [D1])
    lake.write_partitions(rows(spark, [(2, D2, "b")]), t, [D2])
    restored = lake.restore_version(spark, t, 0)
    assert (restored.version, restored.operation) == (2, "RESTORE")
    assertDataFrameEqual(lake.read_table(spark, t)[0], rows(spark, [(1, D1, "a")]))

    lake.write_partitions(rows(spark, [(2, D2, "b"), (3, D3, "c")]), t, [D2, D3])
    deleted = lake.delete_partitions(spark, t, [D2, D3])
    assert deleted.operation == "DELETE"
    assertDataFrameEqual(lake.read_table(spark, t)[0], rows(spark, [(1, D1, "a")]))
    lake.delete_partitions(spark, t, None)
    assert lake.read_table(spark, t)[0].count() == 0


def test_overwrite_and_append(spark: SparkSession, lake_root: str) -> None:
    dim = Table.at(f"{lake_root}/dim", name="dim")
    lake.overwrite_table(spark.createDataFrame([(1, "a")], "k int, v string"), dim, "v1")
    result = lake.overwrite_table(spark.createDataFrame([(2, 3.5)], "k int, w double"), dim)
    assert (result.version, result.rows_written) == (1, 1)
    assertDataFrameEqual(lake.read_table(spark, dim)[0], spark.createDataFrame([(2, 3.5)], "k int, w double"))
    log = Table.at(f"{lake_root}/log")
    lake.append_rows(spark.createDataFrame([(1,)], "n int"), log)
    lake.append_rows(spark.createDataFrame([(2, "x")], "n int, extra string"), log)
    assert sorted(tuple(r) for r in lake.read_table(spark, log)[0].collect()) == [(1, None), (2, "x")]
    assert lake.history(spark, log).count() == 2


def test_describe_error_gives_one_line_with_the_error_class(spark: SparkSession, lake_root: str) -> None:
    t = dated(lake_root)
    lake.write_partitions(rows(spark, [(1, D1, "a")]), t, [D1])
    for data_file in glob.glob(f"{t.path}/date=*/*.parquet"):
        Path(data_file).write_bytes(b"garbage")
    with pytest.raises(Exception) as err:
        lake.read_table(spark, t)[0].collect()
    line = describe_error(err.value)
    assert line.startswith("[FAILED_READ_FILE") and "\n" not in line and len(line) <= 400
    assert describe_error(ValueError("plain message\nsecond line")) == "plain message"
    assert describe_error(RuntimeError()) == "RuntimeError"
