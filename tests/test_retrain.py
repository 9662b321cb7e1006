"""The monitoring loop on a synthetic use case with a known concept shift:
train -> promote -> score -> monitor (incremental, late labels, canary) -> retrain -> gate,
and runs with nothing to do."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import yaml
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark import lake, registry
from mlops_spark.cli import main as cli_main
from mlops_spark.config import AppConfig, validate_config
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.monitor import monitor
from mlops_spark.jobs.promote import promote
from mlops_spark.jobs.retrain import retrain
from mlops_spark.jobs.score import score
from mlops_spark.jobs.train import train
from mlops_spark.retraining import shifted_split

from .conftest import tbl

pytestmark = pytest.mark.e2e

START = dt.date(2024, 1, 1)
DAYS = 28
SHIFT = dt.date(2024, 1, 15)  # the label's relation to the features flips from this day
LATE = [dt.date(2024, 1, 27), dt.date(2024, 1, 28)]  # labels land after the first monitor
MODEL = "synth_model"


def synth_config(lake_root: str, store: dict[str, str]) -> AppConfig:
    return validate_config(synth_settings(lake_root, store))


def synth_settings(lake_root: str, store: dict[str, str]) -> dict[str, Any]:
    return {
        "project": "synth",
        "lake": {"root": lake_root},
        "spark": {"shuffle_partitions": 2},
        "mlflow": {
            "tracking_uri": store["tracking_uri"],
            "artifact_location": store["artifact_location"],
            "experiment": "synth",
            "model_name": MODEL,
        },
        "features": {
            "name": "synth",
            "base_table": "synth",
            "entity_id": {"name": "id", "expr": "id"},
            "event_time": "ts",
            "label": {"name": "label", "expr": "label"},
        },
        "model": {
            "estimator": "logistic_regression",
            "params": {"maxIter": 20},
            "categorical": ["cat"],
            "numeric": ["x1", "x2"],
        },
        "split": {
            "train": {"from": "2024-01-01", "to": "2024-01-10"},
            "test": {"from": "2024-01-11", "to": "2024-01-14"},
        },
        "promotion": {"metric": "areaUnderROC", "thresholds": {"areaUnderROC": 0.55}},
        "monitoring": {
            "windows": [],  # rolling windows: tests/test_monitoring.py
            "slices": ["cat"],
            "bins": 10,
            "grid_size": 50,
            "retrain": {"alerts": 2, "of_last": 4, "metrics": ["areaUnderROC"]},
            "canary": {"partitions": 3},
        },
    }


def synth_features(spark: SparkSession, late_labels: bool) -> DataFrame:
    rng = np.random.default_rng(11)
    rows: list[tuple[Any, ...]] = []
    for i in range(DAYS):
        day = START + dt.timedelta(days=i)
        n = 250
        after = day >= SHIFT
        x1 = rng.normal(0, 1, n)
        x2 = rng.normal(0.8 if after else 0.0, 1, n)
        cat = rng.choice(["A", "B", "C"], n)
        logit = (-2.5 * x1 + 1.5 * x2 - 1.0) if after else (2.5 * x1 - 1.0)
        y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
        for k in range(n):
            label = None if (late_labels and day in LATE) else float(y[k])
            rows.append((f"{day}-{k}", day, float(x1[k]), float(x2[k]), str(cat[k]), label))
    return spark.createDataFrame(rows, "id string, date date, x1 double, x2 double, cat string, label double")


def write_features(spark: SparkSession, config: AppConfig, late_labels: bool, dates: list[dt.date]) -> None:
    df = synth_features(spark, late_labels).where(lake.partition_filter("date", dates=dates))
    lake.write_partitions(df, tbl(config, "features.synth"), dates)


def days(first: int, last: int) -> list[dt.date]:
    return [START + dt.timedelta(days=i) for i in range(first - 1, last)]


def test_alert_triggers_retrain_gate_and_quiet_runs(
    spark: SparkSession, lake_root: str, mlflow_store: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = synth_config(lake_root, mlflow_store)
    write_features(spark, config, late_labels=True, dates=days(1, DAYS))
    assert retrain(config, JobArgs(), spark).result.decision == "nothing"  # no champion yet

    train(config, JobArgs(), spark)
    assert promote(config, JobArgs(), spark).result.decision == "promoted"
    score(config, JobArgs(start=days(1, 1)[0], end=days(14, 14)[0]), spark)

    first = monitor(config, JobArgs(), spark)
    assert first.result.monitored_partitions == 14
    mon_path = tbl(config, f"monitoring.{MODEL}").path
    table = spark.read.format("delta").load(mon_path)
    keys = ["date", "model_version", "kind", "column", "slice", "window_days", "metric"]
    assert table.count() == table.select(*keys).distinct().count()  # one row per key
    q = {
        r["slice"]: r["value"] for r in table.where("kind = 'quality' AND metric = 'areaUnderROC'").collect()
    }
    assert {"all", "cat=A", "cat=B", "cat=C"} <= set(q)
    assert Path(lake_root, "reports", MODEL, "latest.html").read_text().count("<img") >= 3

    # before the shift: quality is fine, the rule does not fire
    quiet = retrain(config, JobArgs(), spark)
    assert quiet.result.decision == "nothing"
    assert "0 of the last 4" in quiet.result.rule

    # a challenger beside the champion: monitor shadow-scores it without touching predictions
    train(config, JobArgs(), spark)
    before = spark.read.format("delta").load(tbl(config, f"predictions.{MODEL}").path).collect()
    canary_run = monitor(config, JobArgs(start=days(13, 13)[0], end=days(14, 14)[0]), spark)
    assert canary_run.result.monitored_partitions == 2
    after = spark.read.format("delta").load(tbl(config, f"predictions.{MODEL}").path).collect()
    assert sorted(map(tuple, before)) == sorted(map(tuple, after))
    shadow = spark.read.format("delta").load(tbl(config, f"predictions.{MODEL}_shadow").path)
    assert shadow.count() == 500 and {r[0] for r in shadow.select("model_version").distinct().collect()} == {
        2
    }
    canary_rows = {
        r["metric"]: r["value"]
        for r in spark.read.format("delta")
        .load(mon_path)
        .where("kind = 'canary' AND date = DATE'2024-01-14'")
        .collect()
    }
    # same data, same seed: the challenger is the champion's twin (the score job may use a
    # compiled SQL path, so probabilities agree to rounding: KS is at most one row's step)
    assert canary_rows["agreement"] == 1.0 and canary_rows["ks"] <= 1 / 250 + 1e-12
    assert canary_rows["mean_abs_diff"] < 1e-9 and canary_rows["correlation"] > 0.999999

    # the concept shifts: score and monitor only the new partitions
    score(config, JobArgs(), spark)
    second = monitor(config, JobArgs(), spark)
    assert second.result.monitored_partitions == 14
    assert second.result.alerts > 0
    assert monitor(config, JobArgs(), spark).result.monitored_partitions == 0
    # labels of the last two days land late: exactly those partitions are re-monitored
    write_features(spark, config, late_labels=False, dates=LATE)
    late = monitor(config, JobArgs(), spark)
    assert late.result.monitored_partitions == 2
    table = spark.read.format("delta").load(mon_path)
    auc = {
        r["date"]: r["value"]
        for r in table.where("kind = 'quality' AND slice = 'all' AND metric = 'areaUnderROC'").collect()
    }
    assert set(LATE) <= set(auc) and max(auc[d] for d in LATE) < 0.6 < min(auc[d] for d in days(1, 14))
    late_auc = table.where(F.col("date").isin(LATE) & (F.col("metric") == "areaUnderROC"))
    assert {r["status"] for r in late_auc.where("kind = 'quality'").collect()} == {"alert"}
    assert (late.result.newest, late.result.newest_alerts > 0) == (LATE[-1], True)
    # for a scheduler: the CLI's monitor --fail-on-alert exits 3 on the alerting newest day
    conf = Path(lake_root).parent / "synth.yml"
    conf.write_text(yaml.safe_dump(synth_settings(lake_root, mlflow_store)))
    cli_args = ["monitor", "--conf", str(conf), "--date", str(LATE[-1]), "--fail-on-alert"]
    assert cli_main(cli_args) == 3
    assert f"alert(s) on {LATE[-1]} (--fail-on-alert: exit 3)" in capsys.readouterr().err
    # a concept shift leaves the scores' distribution alone: the label-free estimate cannot
    # see it (it stays near the holdout's AUC) - only realised quality can
    estimates = late_auc.where("kind = 'estimated_quality' AND slice = 'all'").collect()
    estimated = {r["date"]: r["value"] for r in estimates}
    assert set(LATE) <= set(estimated) and min(estimated[d] for d in LATE) > 0.7

    # alert in N of the last M partitions: retrain on the newest data, canary, gate
    fired = retrain(config, JobArgs(), spark)
    assert fired.result.decision == "promoted", fired.lines
    assert "4 of the last 4" in fired.result.rule
    client = registry.configure(config.mlflow)
    champion = registry.resolve(client, MODEL, alias="champion")
    assert champion.version == fired.result.challenger == 3
    run = client.get_run(champion.run_id)
    assert run.data.params["train_range"] == "2024-01-15..2024-01-24"
    assert run.data.params["test_range"] == "2024-01-25..2024-01-28"
    tags = registry.version_tags(client, champion)
    assert float(tags["canary.challenger_areaUnderROC"]) > 0.7 > float(tags["canary.champion_areaUnderROC"])

    # nothing changed since: the new champion has no alerts, nothing is trained
    again = retrain(config, JobArgs(), spark)
    assert again.result.decision == "nothing"
    assert len(client.search_model_versions(f"name='{MODEL}'")) == 3
    runs = mlflow.search_runs(experiment_names=["synth"], filter_string="tags.`mlops.job` = 'monitor'")
    assert len(runs) == 5  # one per monitor run that monitored something; the no-op run logs none
    artifacts = client.list_artifacts(runs.iloc[0].run_id, "monitoring")
    assert any(a.path.endswith("monitoring_report.html") for a in artifacts)
    audit = spark.read.format("delta").load(tbl(config, "ops.jobs").path)
    assert {r["job"] for r in audit.collect()} >= {"monitor", "retrain", "train", "promote", "score"}


def test_shifted_split_slides_or_expands() -> None:
    config = synth_config("/tmp/unused", {"tracking_uri": "sqlite:///x.db", "artifact_location": "/tmp/a"})
    # train 2024-01-01..01-10 (10 days), test 01-11..01-14 (4 days); the new test range ends on 02-14
    assert (config.split.train.start, config.split.test.end) == (dt.date(2024, 1, 1), dt.date(2024, 1, 14))
    slid = shifted_split(config.split, dt.date(2024, 2, 14), "slide")
    assert (slid.train.start, slid.train.end) == (dt.date(2024, 2, 1), dt.date(2024, 2, 10))
    assert (slid.test.start, slid.test.end) == (dt.date(2024, 2, 11), dt.date(2024, 2, 14))
    assert slid.seed == config.split.seed
    grown = shifted_split(config.split, dt.date(2024, 2, 14), "expand")
    assert (grown.train.start, grown.train.end) == (dt.date(2024, 1, 1), dt.date(2024, 2, 10))
    assert (grown.test.start, grown.test.end) == (slid.test.start, slid.test.end)
