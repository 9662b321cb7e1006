"""Lineage: what a training run records so any prediction can be walked back to its data.

A training run records the resolved config (an artifact), every table it read with the
exact Delta version (an artifact, tags and MLflow dataset inputs), the git commit (MLflow's
own ``mlflow.source.git.commit`` tag), the seed and the job run id. `training_record`
reads that back (monitoring's reference rows, reproduction, retraining).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pyspark.sql import DataFrame

from mlops_spark.errors import JobFailed
from mlops_spark.lake import TableRef
from mlops_spark.registry.models import ModelRef
from mlops_spark.registry.tracking import git_commit

CONFIG_ARTIFACT = "config/resolved.json"
FEATURES_VERSION_TAG = "lineage.features_version"
FEATURES_PATH_TAG = "lineage.features_path"
REPRODUCES_TAG = "mlops.reproduces"
JOB_RUN_TAG = "mlops.job_run_id"


def run_tags(job: str, job_run_id: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The tags every run of a job gets: MLflow's standard source tags (what its UI shows)
    and the job run id that joins the run to the jobs audit table."""
    commit = git_commit()
    tags = {
        "mlflow.source.type": "JOB",
        "mlflow.source.name": f"mlops-spark {job}",
        "mlflow.source.git.commit": commit.removesuffix("-dirty"),
        "mlops.git_dirty": str(commit.endswith("-dirty")).lower(),
        "mlops.job": job,
        JOB_RUN_TAG: job_run_id,
        "mlflow.user": os.environ.get("MLOPS_SPARK_USER") or os.environ.get("USER") or "unknown",
    }
    tags.update(extra or {})
    return tags


def training_tags(features: TableRef, seed: int) -> dict[str, str]:
    return {
        FEATURES_VERSION_TAG: str(features.version),
        FEATURES_PATH_TAG: features.path,
        "mlops.seed": str(seed),
    }


def log_lineage(
    resolved_config: Mapping[str, Any],
    reads: Sequence[TableRef],
    datasets: Iterable[tuple[DataFrame, TableRef]] = (),
    extra_artifacts: Mapping[str, Any] | None = None,
) -> None:
    """Log to the active run: the resolved config, every table read (name, path, version)
    as an artifact and as tags, MLflow dataset inputs for ``datasets`` (frames with only
    the columns that matter, so the recorded schema and digest stay small), and any
    ``extra_artifacts`` as JSON files ({file name: data})."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "resolved.json"
        cfg.write_text(json.dumps(resolved_config, indent=2, sort_keys=True))
        mlflow.log_artifact(str(cfg), artifact_path="config")
        tables = Path(tmp) / "tables.json"
        tables.write_text(
            json.dumps([{"name": r.name, "path": r.path, "version": r.version} for r in reads], indent=2)
        )
        mlflow.log_artifact(str(tables), artifact_path="lineage")
        for name, data in (extra_artifacts or {}).items():
            extra = Path(tmp) / name
            extra.write_text(json.dumps(data, indent=2))
            mlflow.log_artifact(str(extra))
    mlflow.set_tags({f"lineage.table.{r.name}": f"{r.path}@v{r.version}" for r in reads})
    for frame, ref in datasets:
        dataset = mlflow.data.from_spark(frame, path=ref.path, version=str(ref.version), name=ref.name)  # type: ignore[attr-defined]
        mlflow.log_input(dataset, context="training")


def _date_range(text: str | None) -> tuple[dt.date, dt.date] | None:
    if not text or ".." not in text:
        return None
    lo, hi = text.split("..", 1)
    return dt.date.fromisoformat(lo), dt.date.fromisoformat(hi)


@dataclass(frozen=True)
class TrainingRecord:
    """What a model version's training run recorded about its data."""

    run_id: str
    features_version: int | None
    train_range: tuple[dt.date, dt.date] | None
    test_range: tuple[dt.date, dt.date] | None
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]


def training_record(client: MlflowClient, ref: ModelRef) -> TrainingRecord:
    run = client.get_run(ref.run_id)
    version = run.data.tags.get(FEATURES_VERSION_TAG)
    return TrainingRecord(
        run_id=ref.run_id,
        features_version=int(version) if version is not None else None,
        train_range=_date_range(run.data.params.get("train_range")),
        test_range=_date_range(run.data.params.get("test_range")),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
    )


def recorded_config(client: MlflowClient, run_id: str) -> tuple[dict[str, Any], TrainingRecord]:
    """The resolved config a training run logged, and its record; a clear error when the run
    is missing or is not a training run."""
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise JobFailed(f"--reproduce: no MLflow run {run_id!r} in {mlflow.get_tracking_uri()}") from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=CONFIG_ARTIFACT, dst_path=tmp
            )
        except (MlflowException, OSError):
            raise JobFailed(
                f"--reproduce: run {run_id} has no {CONFIG_ARTIFACT} artifact (is it a train run?)"
            ) from None
        recorded = json.loads(Path(local).read_text())
    if FEATURES_VERSION_TAG not in run.data.tags:
        raise JobFailed(f"--reproduce: run {run_id} has no {FEATURES_VERSION_TAG} tag (is it a train run?)")
    record = training_record(client, ModelRef("run", 0, run_id))
    return recorded, record


def model_requirements(packages: Sequence[str] = ("pyspark", "mlflow")) -> list[str]:
    """What a model needs to load, pinned to this environment. Given explicitly because
    MLflow's inference starts a second Python process that loads the model (about a minute
    on a small machine)."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in packages]


def python_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))
