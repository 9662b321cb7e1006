"""Publishing a monitor run's report: render the page, save it next to the lake, log it to MLflow."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark import registry
from mlops_spark.catalog import Catalog
from mlops_spark.config import AppConfig
from mlops_spark.monitoring.causes import PRIMARY_QUALITY
from mlops_spark.monitoring.drift import pooled_bins
from mlops_spark.monitoring.frames import COLUMN, NEW, OTHER
from mlops_spark.monitoring.profile import ReferenceProfile
from mlops_spark.monitoring.reference import prediction_columns
from mlops_spark.report import ReportInput, render_report, save_report

QUALITY_METRICS = {
    "binary": ("areaUnderROC", "positive_rate", "predicted_positive_rate", "log_loss"),
    "multiclass": ("accuracy", "macro_f1", "log_loss"),
    "regression": ("rmse", "mae", "bias"),
}


@dataclass(frozen=True)
class ReportRun:
    """What the report of one monitor run is about."""

    job_run_id: str
    version: int
    targets: Sequence[dt.date]
    alerts: int
    warnings: int


def publish_report(
    spark: SparkSession,
    config: AppConfig,
    table: DataFrame,
    profile: ReferenceProfile,
    rows: DataFrame,
    run: ReportRun,
    causes: pd.DataFrame | None = None,
    holdout: float | None = None,
) -> str:
    """Render the HTML report, save it under <lake.root>/reports/<model>/ (a timestamped copy
    and ``latest.html``) and log it to MLflow; returns where the timestamped copy went.
    ``causes`` (`mlops_spark.monitoring.causes.rank_causes`) opens the page; ``holdout`` is the
    primary quality metric on the model's holdout."""
    date_col, model = config.features.date_column, config.mlflow.model_name
    metrics = (
        table.where(F.col("model_name") == model)
        .drop("computed_at", "run_id", "reference", "model_name")
        .withColumnRenamed(date_col, "date")
        .toPandas()
    )
    hist: Any = pooled_bins(rows, profile, []).toPandas()
    hist["label"] = [_bin_label(profile, c, b) for c, b in zip(hist[COLUMN], hist["bin"], strict=True)]
    hist["order"] = [
        _bin_order(profile, c, b, n) for c, b, n in zip(hist[COLUMN], hist["bin"], hist["ref_n"], strict=True)
    ]
    targets = sorted(run.targets)
    catalog = Catalog(config)
    facts = [
        ("model", f"{model} v{run.version}"),
        ("reference", profile.description),
        ("partitions in this run", f"{len(targets)}: {targets[0]}..{targets[-1]}"),
        ("alerts / warnings in this run", f"{run.alerts} / {run.warnings}"),
        ("monitoring table", catalog.monitoring().path),
        ("job run", run.job_run_id),
        ("generated", dt.datetime.now(dt.UTC).isoformat(timespec="seconds")),
    ]
    numeric, categorical = prediction_columns(config)
    page = render_report(
        ReportInput(
            title=f"Monitoring report: {model}",
            facts=facts,
            metrics=metrics,
            histograms=hist,
            prediction_columns=numeric + categorical,
            quality_metrics=QUALITY_METRICS[config.model.resolved_task],
            causes=causes if causes is not None else pd.DataFrame(),
            primary_metric=PRIMARY_QUALITY[config.model.resolved_task],
            holdout=holdout,
        )
    )
    folder = catalog.reports()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    saved = save_report(page, f"{folder}/monitor-{stamp}-{run.job_run_id}.html", spark)
    save_report(page, f"{folder}/latest.html", spark)
    tags = registry.run_tags("monitor", run.job_run_id, {"model_version": str(run.version)})
    with (
        registry.start_run(config.mlflow, f"monitor-{run.job_run_id}", tags),
        tempfile.TemporaryDirectory() as tmp,
    ):
        local = Path(tmp) / "monitoring_report.html"
        local.write_text(page, encoding="utf-8")
        mlflow.log_artifact(str(local), artifact_path="monitoring")
        summary = Path(tmp) / "summary.json"
        facts_json = {"partitions": [str(d) for d in targets], "alerts": run.alerts, "warnings": run.warnings}
        summary.write_text(json.dumps(facts_json))
        mlflow.log_artifact(str(summary), artifact_path="monitoring")
        mlflow.log_metrics(
            {"alerts": float(run.alerts), "warnings": float(run.warnings), "partitions": float(len(targets))}
        )
    return saved


def _bin_label(profile: ReferenceProfile, column: str, bin_: str) -> str:
    if column in profile.numeric:
        labels = profile.numeric[column].bin_labels()
        i = int(bin_)
        return labels[i] if i < len(labels) else bin_
    return {OTHER: "(other)", NEW: "(new)"}.get(bin_, bin_)


def _bin_order(profile: ReferenceProfile, column: str, bin_: str, ref_n: Any) -> float:
    if column in profile.numeric:
        return float(bin_)
    if bin_ == NEW:
        return 1e12
    if bin_ == OTHER:
        return 1e11
    return -float(ref_n or 0)
