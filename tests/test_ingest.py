"""ingest from a folder of files: dated rows by partition, undated rows kept with the reason."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from mlops_spark.config import AppConfig, validate_config
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.ingest import ingest


def config_for(folder: Path, lake_root: str, mlflow_store: dict[str, str]) -> AppConfig:
    return validate_config(
        {
            "lake": {"root": lake_root},
            "spark": {"master": "local[2]", "shuffle_partitions": 2},
            "mlflow": mlflow_store,
            "source": {
                "kind": "files",
                "path": str(folder),
                "tables": {
                    "events": {"date_expr": "to_date(ts)", "key": ["id"]},
                    "shops": {"key": ["shop"]},
                },
            },
            "features": {
                "base_table": "events",
                "entity_id": {"name": "id", "expr": "id"},
                "event_time": "ts",
            },
            "model": {"numeric": ["amount"]},
            "split": {
                "train": {"from": "2024-01-01", "to": "2024-01-01"},
                "test": {"from": "2024-01-02", "to": "2024-01-02"},
            },
        }
    )


def test_undated_rows_are_kept_in_quarantine_with_the_reason(
    spark: SparkSession, tmp_path: Path, lake_root: str, mlflow_store: dict[str, str]
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "ts": ["2024-01-01 08:00:00", "2024-01-02 09:30:00", None, "2024-01-02 23:59:00"],
            "amount": [1.0, 2.0, 3.0, 4.0],
        }
    ).to_csv(source / "events.csv", index=False)
    pd.DataFrame({"shop": ["s1"], "city": ["Oslo"]}).to_csv(source / "shops.csv", index=False)
    config = config_for(source, lake_root, mlflow_store)

    one_day = ingest(config, JobArgs(date=dt.date(2024, 1, 2)), spark)
    assert any("1 source row(s) have no date (to_date(ts) is null)" in line for line in one_day.lines)
    run = ingest(config, JobArgs(), spark)

    bronze = spark.read.format("delta").load(f"{lake_root}/bronze/events")
    expected = spark.createDataFrame(
        [("a", 1.0, dt.date(2024, 1, 1)), ("b", 2.0, dt.date(2024, 1, 2)), ("d", 4.0, dt.date(2024, 1, 2))],
        "id string, amount double, date date",
    )
    assertDataFrameEqual(bronze.select("id", "amount", "date"), expected)
    undated = spark.read.format("delta").load(f"{lake_root}/quarantine/events_undated")
    assertDataFrameEqual(
        undated.select("id", "ts", "amount", "quarantine_reason", "ingest_run_id"),
        spark.createDataFrame(
            [("c", None, 3.0, "date_expr is null: to_date(ts)", run.run_id)],
            "id string, ts timestamp, amount double, quarantine_reason string, ingest_run_id string",
        ),
    )
    assert any("quarantine.events_undated" in w.describe() for w in run.writes)
    # a table whose rows all have dates gets no quarantine table
    assert not (Path(lake_root) / "quarantine" / "shops_undated").exists()
