"""The catalog (logical tables -> locations), date partitioning of foreign tables, and the one
partition policy that validate, features, score and monitor share."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from mlops_spark import lake
from mlops_spark.catalog import Catalog, Partitioning, Table, absolute_location
from mlops_spark.config import AppConfig, load_config
from mlops_spark.errors import ConfigError, JobFailed, NothingInRangeError
from mlops_spark.partition_policy import chunked, describe_dates, select_partitions

from .conftest import FLIGHTS_CONF

D = [dt.date(2020, 1, d) for d in range(1, 6)]


def test_relative_locations_are_made_absolute_against_pythons_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The JVM resolves a relative path against the directory the session started in, so
    after a chdir the catalog hands Spark the path Python means."""
    monkeypatch.chdir(tmp_path)
    config = load_config(FLIGHTS_CONF, "local", ["lake.root=./lake"])
    assert Catalog(config).features().path == f"{tmp_path}/lake/features/flights"
    assert Catalog(config).reports() == f"{tmp_path}/lake/reports/flights_delay"
    for kept in ("s3a://bucket/lake", "file:/data/lake", "dbfs:/lake", "/data/lake"):
        assert absolute_location(kept) == kept


def test_catalog_names_every_table_of_a_use_case(flights_config: AppConfig) -> None:
    catalog = Catalog(flights_config)
    root = flights_config.lake.root
    assert catalog.bronze("flights") == Table(
        "bronze.flights", f"{root}/bronze/flights", Partitioning("date")
    )
    assert catalog.silver("planes") == Table("silver.planes", f"{root}/silver/planes", None)
    assert catalog.undated("flights").path == f"{root}/quarantine/flights_undated"
    assert catalog.features() == Table("features.flights", f"{root}/features/flights", Partitioning("date"))
    assert catalog.predictions().name == "predictions.flights_delay"
    assert catalog.shadow().name == "predictions.flights_delay_shadow"
    assert catalog.monitoring().path == f"{root}/monitoring/flights_delay"
    assert catalog.segments().name == "monitoring.flights_delay_by_carrier_segments"
    assert catalog.jobs() == Table("ops.jobs", f"{root}/ops/jobs", None)
    assert catalog.job_starts() == Table("ops.job_starts", f"{root}/ops/job_starts", None)
    assert catalog.reports() == f"{root}/reports/flights_delay"
    assert catalog.table("silver.weather") == catalog.silver("weather")
    assert catalog.table("predictions.other").partitioned
    with pytest.raises(ConfigError, match=r"source.tables: no table 'nope' \(configured: flights, weather"):
        catalog.bronze("nope")
    with pytest.raises(ConfigError, match="is not a table name"):
        catalog.table("flights")
    scoring = flights_config.scoring.model_copy(update={"table": "custom"})
    assert (
        Catalog(flights_config.model_copy(update={"scoring": scoring})).monitoring().name
        == "monitoring.custom"
    )


def test_a_foreign_table_partitioned_by_a_string_is_read_and_listed_by_date(
    spark: SparkSession, lake_root: str
) -> None:
    """A table another tool wrote, partitioned by a 'yyyyMMdd' string: its dates are typed once,
    date filters prune on the string column, and a value the expression cannot type is named."""
    path = f"{lake_root}/foreign"
    rows = [(1, "20200101"), (2, "20200101"), (3, "20200103")]
    spark.createDataFrame(rows, "id int, day string").write.format("delta").partitionBy("day").save(path)
    foreign = Table("bronze.foreign", path, Partitioning("date", "to_date(day, 'yyyyMMdd')"))
    assert lake.list_partitions(spark, foreign) == [D[0], D[2]]
    df, ref = lake.read_table(spark, foreign, dates=[D[2]])
    assert ref.version == 0
    assertDataFrameEqual(df, spark.createDataFrame([(3, "20200103", D[2])], "id int, day string, date date"))
    spark.conf.set("spark.sql.maxMetadataStringLength", "10000")
    try:
        plan = df._jdf.queryExecution().executedPlan().toString()
    finally:
        spark.conf.unset("spark.sql.maxMetadataStringLength")
    partition_filters = plan.split("PartitionFilters: [", 1)[1].split("], ", 1)[0]
    assert "day#" in partition_filters and "2020-01-03" in partition_filters, plan
    with pytest.raises(JobFailed, match="never writes it"):
        lake.write_partitions(df, foreign, [D[2]])
    spark.createDataFrame([(4, "soon")], "id int, day string").write.format("delta").mode("append").save(path)
    with pytest.raises(
        ConfigError, match=r"to_date\(day, 'yyyyMMdd'\)\" fails on the table's partition values"
    ):
        lake.list_partitions(spark, foreign)
    tolerant = Table("bronze.foreign", path, Partitioning("date", "try_to_date(day, 'yyyyMMdd')"))
    with pytest.raises(ConfigError, match=r"gives null for partition value\(s\) \{'day': 'soon'\}"):
        lake.list_partitions(spark, tolerant)


def test_explicit_range_reprocesses_and_fails_when_it_selects_nothing() -> None:
    def never() -> list[dt.date]:
        raise AssertionError("an explicit range must not read what is done")

    picked = select_partitions("silver.t", D, (D[1], D[3]), never, "run validate")
    assert (picked.targets, picked.explicit, picked.describe()) == (
        tuple(D[1:4]),
        True,
        "3 partition(s) 2020-01-02..2020-01-04",
    )
    with pytest.raises(
        NothingInRangeError,
        match=r"silver.t has no partitions in 2021-01-01..2021-01-02: nothing to process \(run validate\)",
    ):
        select_partitions("silver.t", D, (dt.date(2021, 1, 1), dt.date(2021, 1, 2)), never, "run validate")
    # validate may ask for one missing day as an empty partition (its table rules decide)
    empty = select_partitions("bronze.t", D, (dt.date(2021, 1, 1),) * 2, never, "ingest", empty_day=True)
    assert empty.targets == (dt.date(2021, 1, 1),)


def test_incremental_selects_what_is_not_done_and_nothing_new_is_not_an_error() -> None:
    picked = select_partitions("features.f", D, None, lambda: [D[0], D[2]], "x")
    assert (picked.targets, picked.explicit) == ((D[1], D[3], D[4]), False)
    done = select_partitions("features.f", D, None, lambda: D, "x")
    assert not done and done.describe() == "no partition"
    assert [list(c) for c in chunked(list(reversed(D)), 2)] == [D[0:2], D[2:4], D[4:5]]
    assert describe_dates([D[3], D[0]]) == "2 partition(s) 2020-01-01..2020-01-04"
