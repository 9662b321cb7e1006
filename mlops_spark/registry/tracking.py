"""MLflow tracking: the store a use case points at, experiments, runs, nested runs, batch logging."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from mlops_spark.config import MlflowConfig
from mlops_spark.errors import TrackingServerError

_USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def configure(config: MlflowConfig) -> MlflowClient:
    """Point MLflow at the configured store; fail clearly if a server is unreachable."""
    for noisy in ("mlflow.store.db.utils", "mlflow.spark", "mlflow.data.spark_dataset", "alembic"):
        logging.getLogger(noisy).setLevel(
            logging.WARNING if noisy != "mlflow.data.spark_dataset" else logging.ERROR
        )
    # MLflow exports MLFLOW_TRACKING_URI when a URI is set, so only a value that was in the
    # environment before this process configured MLflow counts as the user's override.
    uri = _USER_TRACKING_URI or config.tracking_uri
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    mlflow.set_tracking_uri(uri)
    if config.registry_uri:
        mlflow.set_registry_uri(config.registry_uri)
    return MlflowClient()


def check_server(uri: str, timeout: float = 5.0) -> None:
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as resp:
            if resp.status != 200:
                raise TrackingServerError(f"MLflow server {uri} answered {resp.status} on /health")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingServerError(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it or fix "
            "mlflow.tracking_uri / MLFLOW_TRACKING_URI"
        ) from None


def ensure_experiment(config: MlflowConfig) -> str:
    exp = mlflow.get_experiment_by_name(config.experiment)
    if exp is not None:
        return str(exp.experiment_id)
    location = config.artifact_location
    if location and "://" not in location:
        location = Path(location).resolve().as_uri()
    return str(mlflow.create_experiment(config.experiment, artifact_location=location))


@contextlib.contextmanager
def start_run(config: MlflowConfig, run_name: str, tags: dict[str, str] | None = None) -> Iterator[Any]:
    configure(config)
    experiment_id = ensure_experiment(config)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        yield run


def git_commit(cwd: str | None = None) -> str:
    """The working tree's commit (with '-dirty' when it has changes), or 'unknown'."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("MLOPS_SPARK_GIT_COMMIT", "unknown")


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def log_to_run(
    run_id: str,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Log to a run by id (safe from any thread, unlike MLflow's active-run functions)."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    MlflowClient().log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
        params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )


def log_child_run(
    parent_run_id: str,
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str] | None = None,
    started: float | None = None,
    ended: float | None = None,
    failed: bool = False,
) -> str:
    """One finished nested run under ``parent_run_id`` (e.g. a tuning trial), with the
    times it really ran. Returns its run id."""
    client = MlflowClient()
    parent = client.get_run(parent_run_id)
    run = client.create_run(
        parent.info.experiment_id,
        start_time=_ms(started),
        tags={"mlflow.parentRunId": parent_run_id, **(tags or {})},
        run_name=run_name,
    )
    run_id = str(run.info.run_id)
    log_to_run(run_id, params, metrics)
    client.set_terminated(run_id, status="FAILED" if failed else "FINISHED", end_time=_ms(ended))
    return run_id


def child_runs(parent_run_id: str) -> list[Any]:
    """The nested runs of a run (oldest first)."""
    client = MlflowClient()
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=10_000,
    )
    return list(runs)
