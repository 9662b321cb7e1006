"""The one place that talks to MLflow: tracking setup, model logging, registry, aliases."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlops_spark.config import MlflowConfig
from mlops_spark.errors import ModelNotFoundError, TrackingServerError

_USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


@dataclass(frozen=True)
class ModelRef:
    """A resolved registered model version."""

    name: str
    version: int
    run_id: str
    alias: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def describe(self) -> str:
        at = f"@{self.alias}" if self.alias else ""
        return f"{self.name} v{self.version}{at}"


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


def resolve(
    client: MlflowClient, name: str, alias: str | None = None, version: int | None = None
) -> ModelRef:
    """A registered version by alias or number, with a clear error when missing."""
    try:
        if version is not None:
            mv = client.get_model_version(name, str(version))
        else:
            assert alias is not None
            mv = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        what = f"version {version}" if version is not None else f"alias @{alias}"
        known = _aliases(client, name)
        hint = f" (known aliases: {', '.join(known)})" if known else " (no model registered yet: run train)"
        raise ModelNotFoundError(f"model {name!r} has no {what}{hint}") from exc
    return ModelRef(name=name, version=int(mv.version), run_id=str(mv.run_id), alias=alias)


def _aliases(client: MlflowClient, name: str) -> list[str]:
    try:
        return [f"@{a}" for a in client.get_registered_model(name).aliases]
    except MlflowException:
        return []


def try_resolve(client: MlflowClient, name: str, alias: str) -> ModelRef | None:
    try:
        return resolve(client, name, alias=alias)
    except ModelNotFoundError:
        return None


def set_alias(client: MlflowClient, ref: ModelRef, alias: str) -> ModelRef:
    client.set_registered_model_alias(ref.name, alias, str(ref.version))
    return ModelRef(ref.name, ref.version, ref.run_id, alias)


def version_tags(client: MlflowClient, ref: ModelRef) -> dict[str, str]:
    mv: ModelVersion = client.get_model_version(ref.name, str(ref.version))
    return dict(mv.tags or {})


def load_spark_model(ref: ModelRef, dfs_tmpdir: str | None = None) -> Any:
    import mlflow.spark

    return mlflow.spark.load_model(ref.uri, dfs_tmpdir=dfs_tmpdir)


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


def set_version_tags(client: MlflowClient, ref: ModelRef, tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(ref.name, str(ref.version), key, value)
