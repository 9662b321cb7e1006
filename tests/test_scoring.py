"""Score job: incremental and pruned, exactly once under kills and concurrency, every path.

A small feature table (12 days of synthetic rows) and a model trained on it by the train
job live in a module-scoped temp lake and MLflow store; each test copies what it changes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from mlops_spark import lake, registry
from mlops_spark.config import AppConfig, validate_config
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.score import score
from mlops_spark.jobs.train import train

MODEL = "toy_delay"
DAY0 = dt.date(2024, 3, 1)
DAYS = [DAY0 + dt.timedelta(days=i) for i in range(12)]
ROWS_PER_DAY = 150
FEATURE_SCHEMA = T.StructType(
    [
        T.StructField("event_id", T.StringType()),
        T.StructField("date", T.DateType()),
        T.StructField("carrier", T.StringType()),
        T.StructField("distance", T.DoubleType()),
        T.StructField("dep_hour", T.DoubleType()),
        T.StructField("delayed", T.DoubleType()),
    ]
)


def feature_rows(days: list[dt.date], seed: int = 7) -> pd.DataFrame:
    """Seeded rows: delay odds rise with the hour and fall with distance; some nulls."""
    rng = np.random.default_rng(seed)
    parts = []
    for day in days:
        n = ROWS_PER_DAY
        hour = rng.integers(5, 23, n).astype(float)
        distance = rng.gamma(3.0, 300.0, n)
        distance[rng.random(n) < 0.05] = np.nan
        carrier = rng.choice(["AA", "B6", "DL", "UA", "WN"], n, p=[0.3, 0.25, 0.2, 0.15, 0.1])
        logit = -2.0 + 0.15 * (hour - 12) - 0.0004 * np.nan_to_num(distance, nan=900.0)
        logit += np.where(carrier == "B6", 0.6, 0.0)
        label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
        parts.append(
            pd.DataFrame(
                {
                    "event_id": [f"{day.isoformat()}-{i:04d}" for i in range(n)],
                    "date": day,
                    "carrier": carrier,
                    "distance": distance,
                    "dep_hour": hour,
                    "delayed": label,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def write_features(spark: SparkSession, config: AppConfig, days: list[dt.date]) -> None:
    pdf = feature_rows(days, seed=days[0].toordinal())
    df = spark.createDataFrame(pdf.astype(object).where(pdf.notna(), None), schema=FEATURE_SCHEMA)
    path = config.table_path("features", config.features.name)
    lake.write_partitions(df, path, "date", days, "features.toy")


def config_dict(lake_root: str, store: Path, **model: Any) -> dict[str, Any]:
    return {
        "project": "scoring-tests",
        "lake": {"root": lake_root},
        "spark": {"master": "local[2]", "shuffle_partitions": 2, "driver_memory": "1g"},
        "mlflow": {
            "tracking_uri": f"sqlite:///{store}/mlflow.db",
            "artifact_location": str(store / "artifacts"),
            "experiment": "scoring-tests",
            "model_name": MODEL,
        },
        "features": {
            "name": "toy",
            "base_table": "events",
            "entity_id": {"name": "event_id", "expr": "event_id"},
            "date_column": "date",
            "event_time": "date",
            "label": {"name": "delayed", "expr": "delayed"},
        },
        "model": {
            "estimator": "logistic_regression",
            "params": {"maxIter": 15, "regParam": 0.01},
            "categorical": ["carrier"],
            "numeric": ["distance", "dep_hour"],
            "scale": True,
            **model,
        },
        "split": {
            "train": {"from": DAYS[0].isoformat(), "to": DAYS[5].isoformat()},
            "test": {"from": DAYS[6].isoformat(), "to": DAYS[8].isoformat()},
        },
    }


@pytest.fixture(scope="module")
def trained(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A lake with 11 days of features and a model registered as @champion."""
    base = tmp_path_factory.mktemp("scoring")
    store = base / "mlflow"
    store.mkdir()
    raw = config_dict(str(base / "lake"), store)
    config = validate_config(raw)
    write_features(spark, config, DAYS[:11])
    trained_ctx = train(config, JobArgs(), spark)
    client = registry.configure(config.mlflow)
    ref = registry.set_alias(client, trained_ctx.result["model"], "champion")
    yield {"base": base, "raw": raw, "store": store, "ref": ref}
    import mlflow

    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


def fresh_lake(
    spark: SparkSession, trained: dict[str, Any], tmp_path: Path, days: list[dt.date]
) -> AppConfig:
    """A new lake holding ``days`` of features, scored by the module's registered model."""
    raw = json.loads(json.dumps(trained["raw"]))
    raw["lake"]["root"] = str(tmp_path / "lake")
    config = validate_config(raw)
    write_features(spark, config, days)
    return config


def predictions(spark: SparkSession, config: AppConfig) -> DataFrame:
    return spark.read.format("delta").load(config.table_path("predictions", config.predictions_table))


def features(spark: SparkSession, config: AppConfig) -> DataFrame:
    return spark.read.format("delta").load(config.table_path("features", config.features.name))


def assert_one_prediction_per_row(spark: SparkSession, config: AppConfig) -> None:
    preds = predictions(spark, config)
    feats = features(spark, config)
    keys = ["event_id", "date"]
    assertDataFrameEqual(preds.select(*keys), feats.select(*keys))


# --------------------------------------------------------------------------- scan metrics


def parquet_scans(spark: SparkSession, since: int, path: str) -> list[dict[str, str]]:
    """Metrics of every Parquet scan of ``path`` in SQL executions with id >= ``since``
    (from Spark's SQL status store, which keeps each execution's plan and metric values)."""
    spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty()  # type: ignore[union-attr]
    store = spark._jsparkSession.sharedState().statusStore()  # type: ignore[attr-defined]
    found: list[dict[str, str]] = []
    executions = store.executionsList().iterator()
    while executions.hasNext():
        execution = executions.next()
        eid = execution.executionId()
        if eid < since:
            continue
        values = store.executionMetrics(eid)
        nodes = store.planGraph(eid).allNodes().iterator()
        while nodes.hasNext():
            node = nodes.next()
            if not node.name().startswith("Scan parquet") or f"[file:{path}]" not in node.desc():
                continue
            metrics: dict[str, str] = {}
            it = node.metrics().iterator()
            while it.hasNext():
                metric = it.next()
                value = values.get(metric.accumulatorId())
                if value.isDefined():
                    metrics[metric.name()] = value.get()
            found.append(metrics)
    return found


def execution_count(spark: SparkSession) -> int:
    return int(spark._jsparkSession.sharedState().statusStore().executionsCount())  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- tests


def test_scores_only_the_new_day_and_reads_only_its_files(
    spark: SparkSession, trained: dict[str, Any], tmp_path: Path
) -> None:
    config = fresh_lake(spark, trained, tmp_path, DAYS[:11])
    first = score(config, JobArgs(), spark)
    assert first.result["scored_partitions"] == 11
    assert first.result["method"] == "compiled"
    assert_one_prediction_per_row(spark, config)

    write_features(spark, config, DAYS[11:])
    feat_path = config.table_path("features", "toy")
    pred_path = config.table_path("predictions", MODEL)
    new_day_files = len(features(spark, config).where(F.col("date") == DAYS[11]).inputFiles())
    since = execution_count(spark)
    spark.conf.set("spark.sql.maxMetadataStringLength", "4096")  # full paths in plan descriptions
    try:
        second = score(config, JobArgs(), spark)
    finally:
        spark.conf.unset("spark.sql.maxMetadataStringLength")
    assert second.result["scored_partitions"] == 1

    feature_scans = parquet_scans(spark, since, feat_path)
    assert feature_scans, "the scoring query did not scan the features table"
    assert {m["number of partitions read"] for m in feature_scans} == {"1"}
    assert sum(int(m["number of files read"]) for m in feature_scans) == new_day_files
    # what is already scored comes from Delta's log: no predictions data file is opened
    assert [
        m for m in parquet_scans(spark, since, pred_path) if m.get("number of files read", "0") != "0"
    ] == []

    commit = lake.history(spark, pred_path, 1).first()
    assert commit is not None and commit["operation"] == "WRITE"
    metrics = commit["operationMetrics"]
    assert int(metrics["numOutputRows"]) == ROWS_PER_DAY
    assert int(metrics["numRemovedFiles"]) == 0
    assert commit["operationParameters"]["predicate"] == json.dumps([f"(date = DATE '{DAYS[11]}')"]) or (
        DAYS[11].isoformat() in commit["operationParameters"]["predicate"]
    )
    added = spark.read.json(f"{pred_path}/_delta_log/{commit['version']:020d}.json").where("add IS NOT NULL")
    assert {r[0] for r in added.select("add.partitionValues.date").collect()} == {DAYS[11].isoformat()}
    assert_one_prediction_per_row(spark, config)

    third = score(config, JobArgs(), spark)
    assert third.result["scored_partitions"] == 0
    assert "nothing new to score" in third.lines[-1]
