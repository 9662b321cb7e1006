"""What every job shares: its context, the jobs audit table and the closing summary.

Jobs are wiring: ``args -> config -> session -> read -> transforms -> write -> summary``.
`run_job` wraps that wiring so every run leaves two appended rows: a ``running`` row (with
the host and process id) in ``ops.job_starts`` before the body starts, and its outcome
(``ok`` or ``failed``, the versions read and written, the summary) as the run's one row in
the jobs audit table ``ops.jobs`` when it ends. A process killed in between has a start and
no outcome; `mlops_spark.runs` shows it as ``lost``. Both writes are blind appends, which
never conflict with each other (a merge that replaced the running row in place cost 2.3 s
against 0.5 s per run, measured, and every job pays it). Every run ends with a short
summary; exceptions propagate for the CLI to map to an exit code.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from mlops_spark import lake
from mlops_spark.catalog import Catalog
from mlops_spark.config import AppConfig
from mlops_spark.errors import MlopsError, root_cause
from mlops_spark.lake import TableRef, WriteResult
from mlops_spark.logs import job_logger
from mlops_spark.session import get_spark

R = TypeVar("R")

AUDIT_SCHEMA = T.StructType(
    [
        T.StructField("job", T.StringType(), False),
        T.StructField("run_id", T.StringType(), False),
        T.StructField("arguments", T.StringType(), True),
        T.StructField("started_at", T.TimestampType(), False),
        T.StructField("ended_at", T.TimestampType(), True),
        T.StructField("duration_s", T.DoubleType(), True),
        T.StructField("status", T.StringType(), False),
        T.StructField("rows_read", T.LongType(), True),
        T.StructField("rows_written", T.LongType(), True),
        T.StructField(
            "tables_read",
            T.ArrayType(
                T.StructType(
                    [
                        T.StructField("name", T.StringType()),
                        T.StructField("path", T.StringType()),
                        T.StructField("version", T.LongType()),
                    ]
                )
            ),
            True,
        ),
        T.StructField(
            "tables_written",
            T.ArrayType(
                T.StructType(
                    [
                        T.StructField("name", T.StringType()),
                        T.StructField("path", T.StringType()),
                        T.StructField("version", T.LongType()),
                        T.StructField("rows", T.LongType()),
                    ]
                )
            ),
            True,
        ),
        T.StructField("summary", T.StringType(), True),
        T.StructField("error", T.StringType(), True),
        T.StructField("host", T.StringType(), True),
        T.StructField("pid", T.LongType(), True),
    ]
)
"""ended_at and duration_s are null while a run is ``running``; host and pid say which
process runs it (columns added to older tables by the first write that has them)."""

RUNNING = "running"


@dataclass
class JobContext:
    """Handed to a job body: config, session, run id, and what the job read and wrote."""

    job: str
    config: AppConfig
    spark: SparkSession
    arguments: dict[str, Any]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started: float = field(default_factory=time.time)
    reads: list[TableRef] = field(default_factory=list)
    writes: list[WriteResult] = field(default_factory=list)
    rows_read: int = 0
    lines: list[str] = field(default_factory=list)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    @property
    def catalog(self) -> Catalog:
        """The use case's tables (names and locations)."""
        return Catalog(self.config)

    def read(self, ref: TableRef) -> TableRef:
        if ref not in self.reads:
            self.reads.append(ref)
        return ref

    def wrote(self, result: WriteResult) -> WriteResult:
        self.writes.append(result)
        return result

    def say(self, line: str) -> None:
        """One line of the job's summary (also logged as progress when it happens)."""
        self.lines.append(line)
        progress(f"[{self.job}] {line}", job=self.job, run_id=self.run_id)

    @property
    def rows_written(self) -> int:
        return sum(w.rows_written for w in self.writes)


def progress(line: str, **fields: str) -> None:
    """A progress line: an INFO record of the jobs' logger (`mlops_spark.logs`), on stderr."""
    job_logger().info(line, extra=fields)


def _audit_row(ctx: JobContext, status: str, error: str | None, summary: str | None) -> dict[str, Any]:
    ended = None if status == RUNNING else time.time()
    return {
        "job": ctx.job,
        "run_id": ctx.run_id,
        "arguments": json.dumps(ctx.arguments, default=str, sort_keys=True),
        "started_at": dt.datetime.fromtimestamp(ctx.started, tz=dt.UTC).replace(tzinfo=None),
        "ended_at": None
        if ended is None
        else dt.datetime.fromtimestamp(ended, tz=dt.UTC).replace(tzinfo=None),
        "duration_s": None if ended is None else round(ended - ctx.started, 3),
        "status": status,
        "rows_read": ctx.rows_read,
        "rows_written": ctx.rows_written,
        "tables_read": [{"name": r.name, "path": r.path, "version": r.version} for r in ctx.reads],
        "tables_written": [
            {"name": w.name, "path": w.path, "version": w.version, "rows": w.rows_written} for w in ctx.writes
        ],
        "summary": summary,
        "error": error,
        "host": ctx.host,
        "pid": ctx.pid,
    }


def write_audit_start(ctx: JobContext) -> None:
    """The run's ``running`` row in ``ops.job_starts``, before its body starts."""
    df = ctx.spark.createDataFrame([_audit_row(ctx, RUNNING, None, None)], schema=AUDIT_SCHEMA)
    lake.append_rows(df, ctx.catalog.job_starts())


def write_audit(ctx: JobContext, status: str, error: str | None, summary: str) -> None:
    """The run's outcome: its one row in the jobs audit table."""
    row = _audit_row(ctx, status, error, summary)
    df = ctx.spark.createDataFrame([row], schema=AUDIT_SCHEMA)
    lake.append_rows(df, ctx.catalog.jobs())


def summarize(ctx: JobContext, status: str, error: str | None = None) -> str:
    took = time.time() - ctx.started
    parts = [f"{ctx.job} {status} in {took:.1f}s (run {ctx.run_id})."]
    if ctx.reads:
        parts.append("Read " + ", ".join(f"{r.name} v{r.version}" for r in ctx.reads) + ".")
    if ctx.writes:
        parts.append("Wrote " + ", ".join(w.describe() for w in ctx.writes) + ".")
    if status == "ok":
        written = {w.name for w in ctx.writes}
        parts.extend(line for line in ctx.lines[-6:] if not any(line.startswith(f"{n}:") for n in written))
    if error:
        parts.append(f"Error: {error}")
    return " ".join(parts)


@dataclass(frozen=True)
class JobRun(Generic[R]):
    """What a finished job run did: its id, the exact table versions it read and wrote, its
    summary lines, and its typed result (one dataclass per job, see `mlops_spark.results`)."""

    job: str
    run_id: str
    started: float
    ended: float
    reads: tuple[TableRef, ...]
    writes: tuple[WriteResult, ...]
    lines: tuple[str, ...]
    summary: str
    result: R

    @property
    def rows_written(self) -> int:
        return sum(w.rows_written for w in self.writes)

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def failure_text(exc: BaseException) -> tuple[str, str]:
    """(the summary's one line, the audit row's error text) for a job body's exception.

    Our own errors say what is wrong in their first line. Anything else, a Spark failure
    above all, is named by its root cause (`errors.root_cause`: the innermost Java cause,
    not the Py4J wrapper), followed in the audit row by the full text it was raised with."""
    if isinstance(exc, MlopsError):
        message = str(exc)
        return (message.splitlines()[0] if message else ""), message
    headline = root_cause(exc)
    full = f"{type(exc).__name__}: {exc}".strip()
    return headline, (headline if full == headline else f"{headline}\n{full}")


def run_job(
    job: str,
    config: AppConfig,
    arguments: dict[str, Any],
    body: Callable[[JobContext], R],
    spark: SparkSession | None = None,
) -> JobRun[R]:
    """Run one job body with audit and summary. Re-raises the body's exception."""
    spark = spark or get_spark(config.spark, app_name=f"mlops-spark-{job}")
    ctx = JobContext(job=job, config=config, spark=spark, arguments=arguments)
    try:
        write_audit_start(ctx)
    except Exception as exc:  # the job can still run and record its outcome
        job_logger().warning(f"[{job}] could not write the running row: {root_cause(exc)}")
    try:
        result = body(ctx)
    except BaseException as exc:
        headline, message = failure_text(exc)
        if not isinstance(exc, MlopsError | KeyboardInterrupt):  # not ours: keep its traceback
            job_logger().error(f"[{job}] {headline}", exc_info=exc, extra={"job": job, "run_id": ctx.run_id})
        summary = summarize(ctx, "FAILED", headline or None)
        try:
            write_audit(ctx, "failed", message[:4000], summary)
        except Exception as audit_exc:  # the job's own error matters more; say why the row is missing
            job_logger().warning(f"[{job}] could not write the audit row: {audit_exc}")
        print(summary, flush=True)
        raise
    summary = summarize(ctx, "ok")
    write_audit(ctx, "ok", None, summary)
    print(summary, flush=True)
    return JobRun(
        job=job,
        run_id=ctx.run_id,
        started=ctx.started,
        ended=time.time(),
        reads=tuple(ctx.reads),
        writes=tuple(ctx.writes),
        lines=tuple(ctx.lines),
        summary=summary,
        result=result,
    )


def pipeline_summary(runs: list[JobRun[Any]], took: float) -> str:
    """A small table of the jobs a pipeline ran: time, what each wrote, its last word."""
    rows = [("job", "time", "result")]
    for run in runs:
        wrote = ", ".join(w.describe() for w in run.writes) or (run.lines[-1] if run.lines else "-")
        rows.append((run.job, f"{run.seconds:.0f}s", wrote))
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    lines = [f"pipeline finished in {took:.0f}s"]
    lines += [f"  {r[0]:<{width[0]}}  {r[1]:>{width[1]}}  {r[2]}" for r in rows]
    return "\n".join(lines)
