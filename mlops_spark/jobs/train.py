"""train: features (pinned version) -> MLflow run -> registered version @challenger."""

from __future__ import annotations

import dataclasses

from pyspark.sql import SparkSession

from mlops_spark import registry
from mlops_spark.config import AppConfig
from mlops_spark.jobs.args import JobArgs
from mlops_spark.results import TrainResult
from mlops_spark.runtime import JobContext, JobRun, run_job
from mlops_spark.training.fit import fit_and_log
from mlops_spark.training.reproduce import compare_metrics, load_run_for_reproduction


def train(
    config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None
) -> JobRun[TrainResult]:
    """Fit the configured pipeline on the train range (tuned on the validation range when
    a search space is set), evaluate on the test range, log everything to MLflow and
    register the model as ``@challenger``.

    With ``--reproduce RUN_ID`` the run's recorded config (model, features, split, lake)
    and feature-table version are used instead; the new metrics are compared with the
    recorded ones and the job fails if any differs by more than
    ``model.reproduce_tolerance``. A reproduction is logged as its own run (tagged
    ``mlops.reproduces``) but not registered, so it never becomes a challenger.
    """
    pinned: int | None = None
    original: dict[str, float] | None = None
    if args.reproduce:
        config, pinned, original = load_run_for_reproduction(config, args.reproduce)

    def body(ctx: JobContext) -> TrainResult:
        client = registry.configure(config.mlflow)
        result = fit_and_log(ctx, config, pinned, reproduces=args.reproduce)
        if original is None:
            assert result.model is not None
            registry.set_alias(client, result.model, registry.CHALLENGER)
            ctx.say(f"registered {result.model.describe()} @{registry.CHALLENGER} (run {result.run_id})")
            return result
        assert args.reproduce is not None
        worst, line, failure = compare_metrics(
            args.reproduce, original, result.metrics, result.run_id, config.model.reproduce_tolerance
        )
        registry.log_to_run(result.run_id, metrics={"reproduction_max_abs_diff": worst})
        if failure is not None:
            raise failure
        ctx.say(line)
        return dataclasses.replace(result, reproduction_max_abs_diff=worst)

    return run_job("train", config, args.as_dict(), body, spark)
