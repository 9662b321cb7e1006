"""The jobs audit table and job summaries."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from mlops_spark import lake
from mlops_spark.catalog import Catalog
from mlops_spark.config import AppConfig
from mlops_spark.errors import JobFailed
from mlops_spark.runtime import JobContext, run_job


def test_successful_job_appends_one_audit_row_with_versions(
    spark: SparkSession, flights_config: AppConfig
) -> None:
    demo = Catalog(flights_config).table("features.demo")

    def body(ctx: JobContext) -> None:
        df = spark.createDataFrame([(1, dt.date(2024, 1, 1)), (2, dt.date(2024, 1, 2))], "id INT, date DATE")
        ctx.wrote(lake.write_partitions(df, demo, [dt.date(2024, 1, 1), dt.date(2024, 1, 2)]))
        ctx.say("wrote two rows")

    ctx = run_job("demo", flights_config, {"date": "2024-01-01"}, body, spark)
    assert ctx.result is None and ctx.lines == ("wrote two rows",)
    audit = spark.read.format("delta").load(Catalog(flights_config).jobs().path)
    row = audit.where(F.col("run_id") == ctx.run_id).collect()
    assert len(row) == 1
    r = row[0]
    assert (r["job"], r["status"], r["rows_written"], r["error"]) == ("demo", "ok", 2, None)
    assert [(t["name"], t["version"], t["rows"]) for t in r["tables_written"]] == [("features.demo", 0, 2)]
    assert r["arguments"] == '{"date": "2024-01-01"}'
    assert r["ended_at"] >= r["started_at"]
    assert "features.demo v0 (2 rows, 2 partition(s))" in r["summary"]


def test_failed_job_is_audited_and_reraised(spark: SparkSession, flights_config: AppConfig) -> None:
    def body(ctx: JobContext) -> None:
        raise JobFailed("table 'x' is broken")

    with pytest.raises(JobFailed, match="broken"):
        run_job("broken", flights_config, {}, body, spark)
    audit = spark.read.format("delta").load(Catalog(flights_config).jobs().path)
    r = audit.where(F.col("job") == "broken").first()
    assert r is not None
    assert r["status"] == "failed"
    assert r["error"] == "table 'x' is broken"
    assert "FAILED" in r["summary"]
