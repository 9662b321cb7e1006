"""Checks before anything is submitted: the master and the tracking server must answer."""

from __future__ import annotations

import os
import socket

from mlops_spark.config import AppConfig
from mlops_spark.errors import JobFailed, UsageError
from mlops_spark.submit.flags import JOBS_WITHOUT_MLFLOW, MasterKind, master_kind

# --------------------------------------------------------------------------- checks


def check_master(master: str, timeout: float = 5.0) -> None:
    """A standalone master must accept connections (any of a comma-separated HA list)."""
    if master_kind(master) != "standalone":
        return
    hosts = master.removeprefix("spark://").split(",")
    reasons = []
    for host_port in hosts:
        host, _, port = host_port.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"bad master URL {master!r} (expected spark://host:port)")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except OSError as exc:
            reasons.append(f"{host_port}: {exc.strerror or exc}")
    raise JobFailed(
        f"Spark master {master} is unreachable ({'; '.join(reasons)}); start it "
        "(scripts/local-cluster.sh start for a local one) or fix --master / $SPARK_MASTER"
    )


def tracking_uri(config: AppConfig) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or config.mlflow.tracking_uri


def check_tracking_server(job: str, config: AppConfig) -> None:
    uri = tracking_uri(config)
    if job in JOBS_WITHOUT_MLFLOW or not uri.startswith(("http://", "https://")):
        return
    from mlops_spark.registry import check_server

    check_server(uri)


def cluster_warnings(config: AppConfig, kind: MasterKind) -> list[str]:
    """Settings that only work while every worker shares this machine's disks."""
    if kind == "local":
        return []
    notes = []
    if "://" not in config.lake.root:
        notes.append(
            f"lake.root {config.lake.root} is a local path: every worker must see it at the same path "
            "(a shared mount), else use hdfs://, s3a://, abfss://..."
        )
    if not tracking_uri(config).startswith(("http://", "https://", "databricks")):
        notes.append(f"MLflow store {tracking_uri(config)} is local to this machine: use an MLflow server")
    return notes
