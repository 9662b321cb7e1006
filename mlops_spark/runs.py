"""Job runs as the jobs audit table records them, including the ones whose process is gone.

A run appends a ``running`` row (with its host and process id) to ``ops.job_starts`` as it
starts and its outcome to ``ops.jobs`` as it ends (`mlops_spark.runtime`). A process killed
in between (SIGKILL, the OOM killer, a lost node) has a start and no outcome, so it reads as
``running`` for ever: `run_state` calls such a run ``lost`` when its process is no longer
on this host. A row from another host cannot be checked from
here and stays ``running``. For a lost run, `commits_since` says what the use case's
tables committed after it started, marking the commits whose userMetadata names the run
(the score job's do), so an operator knows what state the run left the lake in.

``mlops-spark status`` prints `render_status` of the latest runs.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark import lake
from mlops_spark.catalog import Catalog, Table
from mlops_spark.config import AppConfig
from mlops_spark.runtime import RUNNING
from mlops_spark.session import get_spark

LOST = "lost"


@dataclass(frozen=True)
class Commit:
    """A table's newest commit after a run started."""

    table: str
    version: int
    at: dt.datetime
    """UTC."""
    operation: str
    by_run: bool
    """Its userMetadata names the run id (else: it may be another job's)."""

    def describe(self) -> str:
        who = "by this run" if self.by_run else "by this run or another job"
        return f"{self.table} v{self.version} ({self.operation} at {self.at:%Y-%m-%d %H:%M:%S} UTC, {who})"


@dataclass(frozen=True)
class RunStatus:
    """One run's row of the jobs audit table, with its state as seen from here."""

    job: str
    run_id: str
    state: str
    """ok, failed, running (its process is alive, or on another host) or lost."""
    started_at: dt.datetime
    duration_s: float | None
    host: str | None
    pid: int | None
    headline: str
    """The first line of the error, else of the summary."""
    tables_written: tuple[tuple[str, int], ...] = ()
    commits: tuple[Commit, ...] = ()
    """For a lost run: the tables' newest commits after it started."""


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def run_state(
    status: str, host: str | None, pid: int | None, here: str, alive: Callable[[int], bool] = process_alive
) -> str:
    """``status`` as recorded, except a ``running`` row whose process is gone from this
    host: ``lost``. (A process id reused since the run died would read as alive.)"""
    if status != RUNNING or host is None or pid is None or host != here:
        return status
    return RUNNING if alive(pid) else LOST


def _headline(row: dict[str, Any]) -> str:
    text = str(row.get("error") or row.get("summary") or "").strip()
    return text.splitlines()[0] if text else ""


def _audit_frame(spark: SparkSession, table: Table) -> DataFrame | None:
    if not lake.exists(spark, table):
        return None
    df = spark.read.format("delta").load(table.path)
    for column in ("host", "pid"):  # a table written before runs recorded their process
        if column not in df.columns:
            df = df.withColumn(column, F.lit(None))
    return df


def recent_runs(
    spark: SparkSession,
    jobs: Table,
    starts: Table,
    limit: int,
    here: str | None = None,
    alive: Callable[[int], bool] = process_alive,
) -> list[RunStatus]:
    """The ``limit`` latest runs, newest first: the ended ones of the jobs audit table and
    the started ones of ``starts`` (``ops.job_starts``) that have no outcome there."""
    ended, started = _audit_frame(spark, jobs), _audit_frame(spark, starts)
    df: DataFrame | None = ended if ended is not None else started
    if ended is not None and started is not None:
        unfinished = started.join(ended.select("run_id"), "run_id", "left_anti")
        df = ended.unionByName(unfinished, allowMissingColumns=True)
    if df is None:
        return []
    rows = [r.asDict(recursive=True) for r in df.orderBy(F.col("started_at").desc()).limit(limit).collect()]
    host = here or socket.gethostname()
    return [
        RunStatus(
            job=r["job"],
            run_id=r["run_id"],
            state=run_state(r["status"], r["host"], r["pid"], host, alive),
            started_at=r["started_at"],
            duration_s=r["duration_s"],
            host=r["host"],
            pid=r["pid"],
            headline=_headline(r),
            tables_written=tuple((t["name"], t["version"]) for t in r["tables_written"] or []),
        )
        for r in rows
    ]


def use_case_tables(catalog: Catalog) -> list[Table]:
    """The tables the use case's jobs write (foreign tables adopted in place are not)."""
    tables: list[Table] = []
    for name in catalog.source_tables():
        tables += [
            t for t in (catalog.bronze(name), catalog.silver(name), catalog.quarantine(name)) if not t.foreign
        ]
    return [*tables, catalog.features(), catalog.predictions(), catalog.monitoring()]


def _as_utc(local: dt.datetime) -> dt.datetime:
    # Spark hands timestamps to Python as naive local time; the audit table holds naive UTC
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def commits_since(
    spark: SparkSession, tables: Sequence[Table], started_at: dt.datetime, run_id: str
) -> list[Commit]:
    """Each table's newest commit at or after ``started_at`` (naive UTC, as the audit table)."""
    found = []
    for table in tables:
        if not lake.exists(spark, table):
            continue
        rows = (
            lake.history(spark, table).select("version", "timestamp", "operation", "userMetadata").collect()
        )
        after = [r for r in rows if _as_utc(r["timestamp"]) >= started_at]
        if not after:
            continue
        newest = max(after, key=lambda r: r["version"])
        found.append(
            Commit(
                table.name,
                int(newest["version"]),
                _as_utc(newest["timestamp"]),
                str(newest["operation"]),
                run_id in str(newest["userMetadata"] or ""),
            )
        )
    return found


def job_status(config: AppConfig, limit: int = 20, spark: SparkSession | None = None) -> list[RunStatus]:
    """The latest runs, each lost one with what the tables committed after it started."""
    spark = spark or get_spark(config.spark, app_name="mlops-spark-status")
    catalog = Catalog(config)
    runs = recent_runs(spark, catalog.jobs(), catalog.job_starts(), limit)
    tables = use_case_tables(catalog)
    out = []
    for run in runs:
        if run.state == LOST:
            commits = tuple(commits_since(spark, tables, run.started_at, run.run_id))
            run = replace(run, commits=commits)
        out.append(run)
    return out


def render_status(runs: Sequence[RunStatus], jobs_path: str) -> str:
    """A small table of runs, newest first; lost runs say what was committed since they started."""
    if not runs:
        return f"no job runs recorded in {jobs_path}"
    header = ("run", "job", "state", "started (UTC)", "took", "process", "")
    rows = [header]
    for run in runs:
        took = "-" if run.duration_s is None else f"{run.duration_s:.0f}s"
        process = f"{run.host}:{run.pid}" if run.host else "-"
        rows.append(
            (
                run.run_id,
                run.job,
                run.state,
                f"{run.started_at:%Y-%m-%d %H:%M:%S}",
                took,
                process,
                run.headline,
            )
        )
    width = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]

    def line(row: tuple[str, ...]) -> str:
        return (
            "  ".join(f"{c:<{w}}" for c, w in zip(row[:-1], width, strict=True)) + f"  {row[-1]}"
        ).rstrip()

    lines = [line(header)]
    for row, run in zip(rows[1:], runs, strict=True):
        lines.append(line(row))
        if run.state == LOST:
            lines.append(
                f"  ! {run.job} run {run.run_id} died without recording its outcome "
                f"(process {run.pid} is gone)"
            )
            if run.commits:
                lines += [f"    committed since it started: {c.describe()}" for c in run.commits]
            else:
                lines.append("    no table of the use case committed since it started")
    return "\n".join(lines)
