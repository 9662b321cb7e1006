"""A real Spark standalone cluster and MLflow server on 127.0.0.1, driven by spark-submit.sh.

The fixture starts them with scripts/local-cluster.sh (the script users run) on free ports,
and stops every process group it started, also when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from .conftest import FLIGHTS_CONF, ROOT, child_environ, run_in_own_group

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

SCRIPT = ROOT / "scripts" / "local-cluster.sh"
SUBMIT = ROOT / "spark-submit.sh"


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


@dataclass(frozen=True)
class LocalCluster:
    master_url: str
    master_ui: str
    worker_ui: str
    tracking_uri: str
    state: Path
    env: dict[str, str]

    def process_groups(self) -> dict[str, int]:
        return {p.stem: int(p.read_text()) for p in self.state.glob("*.pid")}


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cluster_script(command: str, env: dict[str, str], timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def stop_cluster(cluster: LocalCluster) -> list[int]:
    """`local-cluster.sh stop`, then SIGKILL any recorded group that survived it."""
    groups = cluster.process_groups()
    try:
        cluster_script("stop", cluster.env, timeout=120)
    finally:
        for pgid in groups.values():
            if group_alive(pgid):
                os.killpg(pgid, signal.SIGKILL)
    return list(groups.values())


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    state = tmp_path_factory.mktemp("local-cluster")
    master, master_ui, worker_ui, mlflow = free_ports(4)
    env = {
        **child_environ(),
        "LOCAL_CLUSTER_DIR": str(state),
        "SPARK_MASTER_PORT": str(master),
        "SPARK_MASTER_WEBUI_PORT": str(master_ui),
        "SPARK_WORKER_WEBUI_PORT": str(worker_ui),
        "MLFLOW_PORT": str(mlflow),
        "WORKERS": "1",
        "WORKER_CORES": "2",
        "WORKER_MEMORY": "2g",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "START_TIMEOUT": "300",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("SPARK_MASTER", None)
    cluster = LocalCluster(
        master_url=f"spark://127.0.0.1:{master}",
        master_ui=f"http://127.0.0.1:{master_ui}",
        worker_ui=f"http://127.0.0.1:{worker_ui}",
        tracking_uri=f"http://127.0.0.1:{mlflow}",
        state=state,
        env=env,
    )

    # A killed test run (SIGTERM from CI or `timeout`) must not leave the cluster behind:
    # turn the signal into an exception so the finally below still stops it.
    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        started = cluster_script("start", env, timeout=1200)
        assert started.returncode == 0, started.stderr[-3000:]
        assert f"export SPARK_MASTER={cluster.master_url}" in started.stdout
        assert f"export MLFLOW_TRACKING_URI={cluster.tracking_uri}" in started.stdout
        yield cluster
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            stop_cluster(cluster)
        finally:
            signal.signal(signal.SIGTERM, previous)


def spark_submit(
    cluster: LocalCluster, job: str, lake: Path, *job_args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **cluster.env,
        "MLFLOW_TRACKING_URI": cluster.tracking_uri,
        "MLOPS_LAKE_ROOT": str(lake),
        "MLOPS_SPARK_LOG_LEVEL": "ERROR",
    }
    args = [
        str(SUBMIT), job,
        "--master", cluster.master_url,
        # one executor with the worker's two cores: a second executor JVM on a 2-core
        # machine only adds its own start and JIT warm-up to the driver's
        "--driver-memory", "1g", "--executor-memory", "1g", "--executor-cores", "2",
        "--no-dynamic-allocation", "--shuffle-partitions", "4",
        "--",
        "--conf", str(FLIGHTS_CONF), "--env", "cluster",
        "--set", "split.train.from=2013-01-01", "--set", "split.train.to=2013-01-07",
        "--set", "split.test.from=2013-01-08", "--set", "split.test.to=2013-01-10",
        "--set", "model.params.maxIter=10", "--set", "model.tuning.max_evals=2",
        *job_args,
    ]  # fmt: skip
    return run_in_own_group(args, env, lake.parent, timeout=1800)


@pytest.mark.timeout(5400)
def test_every_stage_runs_on_the_standalone_cluster(
    local_cluster: LocalCluster, spark: SparkSession, tmp_path: Path
) -> None:
    """One spark-submit of the pipeline job runs every stage (ingest to retrain, the
    segmented model too) as one application on the worker: each extra submit would only
    pay another driver and executor start for what this one already proves."""
    from mlflow import MlflowClient

    lake = tmp_path / "lake"
    started = time.time()
    result = spark_submit(local_cluster, "pipeline", lake, "--from", "2013-01-01", "--to", "2013-01-10")
    took = time.time() - started
    assert result.returncode == 0, f"pipeline failed:\n{result.stderr[-4000:]}"
    assert "pipeline finished in" in result.stdout, result.stdout[-2000:]
    assert "--master spark://127.0.0.1:" in result.stderr  # the command it ran
    print(f"pipeline on the cluster: {took:.0f}s")

    # The master ran the job as an application on its worker (not local mode).
    master = get_json(f"{local_cluster.master_ui}/json/")
    app = {a["name"]: a for a in master["completedapps"]}["mlops-spark-pipeline"]
    assert app["id"].startswith("app-") and app["state"] == "FINISHED", app
    assert app["cores"] >= 1 and app["memoryperexecutor"] == 1024, app
    # the worker records an executor as finished a moment after its application ends
    deadline = time.time() + 60
    while True:
        worker = get_json(f"{local_cluster.worker_ui}/json/")
        ran_on_worker = {e["appid"] for e in worker["finishedexecutors"]}
        if app["id"] in ran_on_worker or time.time() > deadline:
            break
        time.sleep(1)
    assert app["id"] in ran_on_worker

    # The registry on the server holds the model; its artifacts are proxied by the server.
    client = MlflowClient(tracking_uri=local_cluster.tracking_uri)
    champion = client.get_model_version_by_alias("flights_delay", "champion")
    assert champion.version == "1"
    run = client.get_run(champion.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert run.data.metrics["test_areaUnderROC"] > 0.5
    stored = list((local_cluster.state / "mlflow" / "artifacts").rglob("MLmodel"))
    assert stored, "the model's files are in the server's artifact store"

    # One prediction per featurised flight, each naming the model version that made it.
    predictions = spark.read.format("delta").load(str(lake / "predictions" / "flights_delay"))
    features = spark.read.format("delta").load(str(lake / "features" / "flights"))
    assert predictions.count() == features.count() > 5_000
    assert predictions.select("flight_id").distinct().count() == predictions.count()
    assert {r[0] for r in predictions.select("model_version").distinct().collect()} == {1}
    assert {r[0] for r in predictions.select("model_run_id").distinct().collect()} == {champion.run_id}
    assert predictions.where(~F.col("probability").between(0.0, 1.0)).count() == 0
    days = {r[0].isoformat() for r in predictions.select("date").distinct().collect()}
    assert days == {f"2013-01-{d:02d}" for d in range(1, 11)}

    audit = spark.read.format("delta").load(str(lake / "ops" / "jobs"))
    rows = audit.orderBy("started_at").collect()
    assert [r["job"] for r in rows] == [
        "ingest", "validate", "features", "train", "promote", "score",
        "train_segmented", "promote_segmented", "score_segmented", "monitor", "retrain",
    ]  # fmt: skip
    assert {r["status"] for r in rows} == {"ok"}
    segmented = spark.read.format("delta").load(str(lake / "predictions" / "flights_delay_by_carrier"))
    assert segmented.count() == features.count()
    monitored = spark.read.format("delta").load(str(lake / "monitoring" / "flights_delay"))
    assert {r[0].isoformat() for r in monitored.select("date").distinct().collect()} == days


def test_stop_leaves_no_process_behind(local_cluster: LocalCluster) -> None:
    groups = local_cluster.process_groups()
    assert set(groups) == {"master", "worker-1", "mlflow"}
    assert all(group_alive(pgid) for pgid in groups.values())
    stopped = stop_cluster(local_cluster)
    assert sorted(stopped) == sorted(groups.values())
    assert not any(group_alive(pgid) for pgid in stopped)
    assert not list(local_cluster.state.glob("*.pid"))
    status = cluster_script("status", local_cluster.env, timeout=60)
    assert status.returncode == 3 and "nothing running" in status.stdout


def test_start_refuses_a_busy_port_and_leaves_nothing_running(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        master_ui, mlflow = free_ports(2)
        env = {
            **child_environ(),
            "LOCAL_CLUSTER_DIR": str(tmp_path / "state"),
            "SPARK_MASTER_PORT": str(port),
            "SPARK_MASTER_WEBUI_PORT": str(master_ui),
            "MLFLOW_PORT": str(mlflow),
        }
        result = cluster_script("start", env, timeout=120)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert not list((tmp_path / "state").glob("*.pid"))
