"""Job runs as the audit table records them: running, ok, failed, and lost when the process
that ran them died without closing their row (`mlops-spark status`)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from mlops_spark import cli, lake
from mlops_spark.catalog import Catalog
from mlops_spark.config import AppConfig
from mlops_spark.runs import LOST, job_status, process_alive, render_status, run_state
from mlops_spark.runtime import JobContext, run_job

from .conftest import FLIGHTS_CONF, ROOT, child_environ, flights_overrides


def a_dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait(timeout=60)
    return done.pid


def test_a_running_row_is_lost_only_when_its_process_is_gone_from_this_host() -> None:
    here, dead = socket.gethostname(), a_dead_pid()
    assert process_alive(os.getpid()) and not process_alive(dead)
    assert run_state("running", here, dead, here) == LOST
    assert run_state("running", here, os.getpid(), here) == "running"
    assert run_state("running", "another-host", dead, here) == "running"  # cannot be checked from here
    assert run_state("ok", here, dead, here) == "ok"
    assert run_state("failed", here, dead, here) == "failed"


# a job that commits one partition of the predictions table (its commit names the run,
# as the score job's do), says so, then hangs until it is killed
HANGING_JOB = """
import datetime as dt, sys, time
from mlops_spark import lake
from mlops_spark.config import load_config
from mlops_spark.runtime import run_job

config = load_config(sys.argv[1], "local", sys.argv[2:])

def body(ctx):
    table = ctx.catalog.predictions()
    schema = f"id string, {table.date_column} date, p double"
    rows = ctx.spark.createDataFrame([("e1", dt.date(2013, 1, 2), 0.25)], schema)
    ctx.wrote(lake.write_partitions(rows, table, [dt.date(2013, 1, 2)], f"score stub run {ctx.run_id}"))
    print("COMMITTED", ctx.run_id, flush=True)
    time.sleep(900)

run_job("score", config, {}, body)
"""


@pytest.mark.timeout(900)
def test_a_sigkilled_job_shows_as_lost_with_what_it_committed(
    spark: SparkSession,
    flights_config: AppConfig,
    lake_root: str,
    mlflow_store: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sets = [*flights_overrides(lake_root, mlflow_store), "spark.master=local[1]"]
    env = {**child_environ(), "MLOPS_SPARK_LOG_LEVEL": "ERROR", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HANGING_JOB, str(FLIGHTS_CONF), *sets],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group: the JVM dies with it
    )
    committed: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        committed.extend(ln.split()[1] for ln in proc.stdout if ln.startswith("COMMITTED "))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.time() + 600
        while not committed and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert committed, f"the job never committed (exit code {proc.poll()})"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    (run_id,) = committed

    # a run of this process, alive while its body asks, and one that finished
    during: list[str] = []

    def body(ctx: JobContext) -> None:
        during.extend(r.state for r in job_status(flights_config, spark=spark) if r.run_id == ctx.run_id)

    finished = run_job("features", flights_config, {}, body, spark)
    assert during == ["running"]

    runs = {r.run_id: r for r in job_status(flights_config, spark=spark)}
    assert runs[finished.run_id].state == "ok"
    lost = runs[run_id]
    assert (lost.job, lost.state, lost.host, lost.pid, lost.duration_s) == (
        "score",
        LOST,
        socket.gethostname(),
        proc.pid,
        None,
    )
    predictions = Catalog(flights_config).predictions()
    assert lake.current_version(spark, predictions) == 0
    (commit,) = lost.commits
    assert (commit.table, commit.version, commit.operation, commit.by_run) == (
        predictions.name,
        0,
        "WRITE",
        True,
    )
    assert lost.started_at <= commit.at <= dt.datetime.now(dt.UTC).replace(tzinfo=None)

    text = render_status(list(runs.values()), Catalog(flights_config).jobs().path)
    assert f"! score run {run_id} died without recording its outcome (process {proc.pid} is gone)" in text
    assert f"    committed since it started: {predictions.name} v0 (WRITE at " in text
    assert "UTC, by this run)" in text

    # as a user: the status command
    set_flags = [arg for line in sets for arg in ("--set", line)]
    assert cli.main(["status", "--conf", str(FLIGHTS_CONF), "--env", "local", *set_flags]) == 0
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if ln.startswith(run_id))
    assert row.split()[1:3] == ["score", "lost"]
    assert f"{socket.gethostname()}:{proc.pid}" in row
    assert f"! score run {run_id} died without recording its outcome" in out
    assert next(ln for ln in out.splitlines() if ln.startswith(finished.run_id)).split()[1:3] == [
        "features",
        "ok",
    ]
