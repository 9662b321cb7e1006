"""Shared fixtures: one Spark session with Delta, a temp lake, a temp MLflow store."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from mlops_spark.config import AppConfig, SparkConfig, load_config
from mlops_spark.session import get_spark

ROOT = Path(__file__).resolve().parents[1]
FLIGHTS_CONF = ROOT / "conf" / "flights.yml"

os.environ.setdefault("MLOPS_SPARK_LOG_LEVEL", "ERROR")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = get_spark(
        SparkConfig(
            master="local[2]",
            shuffle_partitions=2,
            driver_memory="3g",
            conf={"spark.ui.enabled": "false", "spark.sql.adaptive.coalescePartitions.minPartitionSize": "1"},
        ),
        app_name="mlops-spark-tests",
    )
    yield session
    session.stop()


@pytest.fixture()
def lake_root(tmp_path: Path) -> str:
    root = tmp_path / "lake"
    root.mkdir()
    return str(root)


@pytest.fixture()
def mlflow_store(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private SQLite tracking store and artifact folder for one test."""
    import mlflow

    store = tmp_path / "mlflow"
    store.mkdir()
    uri = f"sqlite:///{store}/mlflow.db"
    previous = os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield {"tracking_uri": uri, "artifact_location": str(store / "artifacts")}
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    if previous is not None:
        os.environ["MLFLOW_TRACKING_URI"] = previous


def flights_overrides(lake_root: str, mlflow_store: dict[str, str], **extra: Any) -> list[str]:
    """--set lines that point conf/flights.yml at a temp lake and store, on a few days."""
    sets = [
        f"lake.root={lake_root}",
        f"mlflow.tracking_uri={mlflow_store['tracking_uri']}",
        f"mlflow.artifact_location={mlflow_store['artifact_location']}",
        "spark.shuffle_partitions=2",
        "split.train.from=2013-01-01",
        "split.train.to=2013-01-10",
        "split.test.from=2013-01-11",
        "split.test.to=2013-01-14",
        "model.params.maxIter=10",
        "model.tuning.max_evals=2",
    ]
    sets += [f"{k}={v}" for k, v in extra.items()]
    return sets


@pytest.fixture()
def flights_config(lake_root: str, mlflow_store: dict[str, str]) -> AppConfig:
    return load_config(FLIGHTS_CONF, "local", flights_overrides(lake_root, mlflow_store))


def run_in_own_group(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a command in its own process group and kill the whole group (the spark-submit
    JVM and its Python driver) if the test is interrupted or the command times out."""
    proc = subprocess.Popen(
        args,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)
