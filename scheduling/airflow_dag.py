"""Airflow DAG: the daily mlops_spark flow as spark-submit jobs (SparkSubmitOperator).

ingest -> validate -> features -> score -> monitor -> retrain. Each task submits the job's
entry point (jobs/<job>.py) with the same arguments as the CLI, so a task behaves exactly
like `mlops-spark <job>`; exit codes 0 (done or nothing to do) and 1/2 (failed) map to
task success and failure. Training and promotion run inside `retrain` only when monitoring
says so. Settings come from environment variables of the Airflow workers:

  MLOPS_SPARK_HOME   the checkout on the workers (default /opt/mlops-spark)
  MLOPS_SPARK_CONF   use-case config, relative to MLOPS_SPARK_HOME (default conf/flights.yml)
  MLOPS_SPARK_ENV    config overlay (default cluster)
  SPARK_CONN_ID      Airflow connection of the Spark master (default spark_default)
  DELTA_PACKAGE      Delta's Maven coordinate (default io.delta:delta-spark_2.13:4.4.0)
"""

from __future__ import annotations

import datetime as dt
import itertools
import os

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

HOME = os.environ.get("MLOPS_SPARK_HOME", "/opt/mlops-spark")
CONF = os.environ.get("MLOPS_SPARK_CONF", "conf/flights.yml")
ENV = os.environ.get("MLOPS_SPARK_ENV", "cluster")
CONN_ID = os.environ.get("SPARK_CONN_ID", "spark_default")
DELTA_PACKAGE = os.environ.get("DELTA_PACKAGE", "io.delta:delta-spark_2.13:4.4.0")
SPARK_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
JOBS = ["ingest", "validate", "features", "score", "monitor", "retrain"]


def job_task(job: str, extra: list[str] | None = None) -> SparkSubmitOperator:
    return SparkSubmitOperator(
        task_id=job,
        application=f"{HOME}/jobs/{job}.py",
        application_args=["--conf", f"{HOME}/{CONF}", "--env", ENV, *(extra or [])],
        conn_id=CONN_ID,
        packages=DELTA_PACKAGE,
        conf=SPARK_CONF,
        name=f"mlops-spark-{job}",
        retries=1 if job != "retrain" else 0,
        retry_delay=dt.timedelta(minutes=10),
    )


with DAG(
    dag_id="mlops_spark_flights",
    description="ingest -> validate -> features -> score -> monitor -> retrain (mlops_spark)",
    schedule="30 5 * * *",
    start_date=dt.datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["mlops_spark"],
) as dag:
    tasks = [job_task(job, ["--date", "{{ ds }}"] if job == "ingest" else None) for job in JOBS]
    for upstream, downstream in itertools.pairwise(tasks):
        upstream >> downstream
