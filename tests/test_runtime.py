"""The jobs audit table and job summaries."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from py4j.protocol import Py4JJavaError
from pyspark.errors import PythonException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark import lake, logs
from mlops_spark.catalog import Catalog
from mlops_spark.cli import main as cli_main
from mlops_spark.config import AppConfig
from mlops_spark.errors import JobFailed, root_cause
from mlops_spark.runtime import JobContext, run_job

from .conftest import FLIGHTS_CONF


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


def test_a_spark_failure_is_summarised_by_its_root_cause(
    spark: SparkSession, flights_config: AppConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A save that dies on a corrupted Parquet file surfaces as `Py4JJavaError: An error
    occurred while calling o123.save`; the summary names the innermost Java cause instead."""
    corrupted = tmp_path / "landing"
    corrupted.mkdir()
    (corrupted / "part-0.parquet").write_bytes(b"not parquet at all " * 8)

    def body(ctx: JobContext) -> None:
        spark.read.schema("a INT").parquet(str(corrupted)).write.format("delta").save(str(tmp_path / "out"))

    with pytest.raises(Py4JJavaError, match=r"An error occurred while calling o\d+\.save"):
        run_job("ingest_corrupted", flights_config, {}, body, spark)
    cause = (
        f"RuntimeException: file:{corrupted}/part-0.parquet is not a Parquet file. "
        "Expected magic number at tail"
    )
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"ingest_corrupted FAILED in [\d.]+s \(run \w+\)\. Error: {re.escape(cause)}.*", summary
    )
    assert "Py4JJavaError" not in summary
    audit = spark.read.format("delta").load(Catalog(flights_config).jobs().path)
    r = audit.where(F.col("job") == "ingest_corrupted").first()
    assert r is not None and r["summary"] == summary
    first, second = r["error"].splitlines()[:2]
    assert first.startswith(cause)
    assert re.match(r"Py4JJavaError: An error occurred while calling o\d+\.save", second)


def test_a_failed_python_udf_is_summarised_by_the_error_it_raised(
    spark: SparkSession, flights_config: AppConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def hour_of(x: int) -> int:
        if x == 3:
            raise ValueError(f"row {x}: no hour in this timestamp")
        return x

    def body(ctx: JobContext) -> None:
        hours = F.udf(hour_of, T.LongType())
        spark.range(5).select(hours("id").alias("h")).write.format("delta").save(str(tmp_path / "out"))

    with pytest.raises(PythonException):
        run_job("features_udf", flights_config, {}, body, spark)
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.endswith(" Error: ValueError: row 3: no hour in this timestamp")


def test_root_cause_of_a_plain_python_error_is_its_first_line() -> None:
    assert root_cause(KeyError("date")) == "KeyError: 'date'"
    assert root_cause(ValueError("first line\nsecond line")) == "ValueError: first line"
    assert root_cause(KeyboardInterrupt()) == "KeyboardInterrupt"


def test_a_run_is_running_in_job_starts_while_its_body_runs_then_has_one_outcome_row(
    spark: SparkSession, flights_config: AppConfig
) -> None:
    import os
    import socket

    catalog = Catalog(flights_config)
    seen: list[dict[str, object]] = []
    outcome_during: list[object] = []

    def body(ctx: JobContext) -> None:
        rows = spark.read.format("delta").load(catalog.job_starts().path)
        seen.extend(r.asDict() for r in rows.where(F.col("run_id") == ctx.run_id).collect())
        if lake.exists(spark, catalog.jobs()):
            ended = spark.read.format("delta").load(catalog.jobs().path)
            outcome_during.extend(ended.where(F.col("run_id") == ctx.run_id).collect())

    run = run_job("watched", flights_config, {}, body, spark)
    (during,) = seen
    assert (during["status"], during["ended_at"], during["duration_s"], during["summary"]) == (
        "running",
        None,
        None,
        None,
    )
    assert (during["host"], during["pid"]) == (socket.gethostname(), os.getpid())
    assert outcome_during == []
    ended = spark.read.format("delta").load(catalog.jobs().path)
    after = ended.where(F.col("run_id") == run.run_id).collect()
    assert len(after) == 1
    assert (after[0]["status"], after[0]["started_at"]) == ("ok", during["started_at"])
    assert after[0]["ended_at"] >= after[0]["started_at"] and after[0]["pid"] == os.getpid()
    starts = spark.read.format("delta").load(catalog.job_starts().path).where(F.col("run_id") == run.run_id)
    assert starts.count() == 1  # the start row stays as it was


def test_concurrent_runs_each_record_their_own_outcome(
    spark: SparkSession, flights_config: AppConfig
) -> None:
    """Runs that start and end at once (appends racing on the two audit tables, the first
    ones creating them) each end with exactly one start row and one outcome row."""
    from concurrent.futures import ThreadPoolExecutor

    def one(n: int) -> str:
        return run_job(f"concurrent{n}", flights_config, {}, lambda ctx: None, spark).run_id

    with ThreadPoolExecutor(max_workers=4) as pool:
        run_ids = list(pool.map(one, range(4)))
    audit = spark.read.format("delta").load(Catalog(flights_config).jobs().path)
    rows = sorted((r["run_id"], r["status"]) for r in audit.collect())
    assert rows == sorted((run_id, "ok") for run_id in run_ids)
    starts = spark.read.format("delta").load(Catalog(flights_config).job_starts().path)
    assert sorted((r["run_id"], r["status"]) for r in starts.collect()) == sorted(
        (run_id, "running") for run_id in run_ids
    )


def test_job_lines_are_log_records_as_text_or_json(
    spark: SparkSession, flights_config: AppConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    def body(ctx: JobContext) -> None:
        ctx.say("step one")

    def boom(ctx: JobContext) -> None:
        raise ValueError("bad thing")

    try:
        logs.configure("INFO", "json")
        capsys.readouterr()
        ran = run_job("demo", flights_config, {}, body, spark)
        records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert [(r["level"], r["message"], r["job"], r["run_id"]) for r in records] == [
            ("INFO", "[demo] step one", "demo", ran.run_id)
        ]
        # an error that is not ours keeps its traceback, in the record
        with pytest.raises(ValueError):
            run_job("demo", flights_config, {}, boom, spark)
        (failed,) = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert failed["level"] == "ERROR" and failed["message"] == "[demo] ValueError: bad thing"
        assert "Traceback" in failed["exception"] and "raise ValueError" in failed["exception"]
        # WARNING keeps progress out
        logs.configure("WARNING", "text")
        run_job("demo", flights_config, {}, body, spark)
        assert capsys.readouterr().err == ""
        # the CLI's own error lines are records too
        bad = ["train", "--conf", str(FLIGHTS_CONF), "--log-format", "json", "--set", "model.estimatr=gbt"]
        assert cli_main(bad) == 2
        (line,) = capsys.readouterr().err.splitlines()
        error = json.loads(line)
        assert error["level"] == "ERROR" and "model.estimatr: unknown key" in error["message"]
    finally:
        logs.configure()
