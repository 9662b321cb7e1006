"""promote: the gated move of @champion (auto, dry run or human approval), and rollback.

See `mlops_spark.promotion.actions` for the modes; this is the wiring.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os

from pyspark.sql import SparkSession

from mlops_spark import registry
from mlops_spark.config import AppConfig
from mlops_spark.errors import UsageError
from mlops_spark.jobs.args import JobArgs
from mlops_spark.promotion import actions
from mlops_spark.results import PromoteResult
from mlops_spark.runtime import JobContext, JobRun, run_job


def promote(
    config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None, job: str = "promote"
) -> JobRun[PromoteResult]:
    """Compare @challenger with @champion on the same holdout and move @champion if the gate
    passes. ``--to-version N`` rolls back; ``--approve V`` / ``--reject V`` settle a
    challenger waiting for approval (mode ``approval``)."""
    picked = [x for x in (args.to_version, args.approve, args.reject) if x is not None]
    if len(picked) > 1:
        raise UsageError("use only one of --to-version, --approve, --reject")

    def body(ctx: JobContext) -> PromoteResult:
        client = registry.configure(config.mlflow)
        name = config.mlflow.model_name
        who = args.approver or os.environ.get("MLOPS_SPARK_USER") or getpass.getuser()
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if args.to_version is not None:
            return actions.rollback(client, name, args.to_version, who, now, ctx.say)
        if args.approve is not None or args.reject is not None:
            version = args.approve if args.approve is not None else args.reject
            assert version is not None
            return actions.settle(client, name, version, args.approve is not None, who, now, ctx.say)
        mode = "dry_run" if args.dry_run else config.promotion.mode
        result, holdout = actions.run_gate(ctx.spark, config, client, mode, now, ctx.say)
        if holdout is not None:
            ctx.read(holdout)
        return result

    return run_job(job, config, args.as_dict(), body, spark)
