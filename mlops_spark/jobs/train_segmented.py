"""train_segmented: features (pinned version) -> one scikit-learn model per segment, fitted in
parallel on Spark -> ONE MLflow model (pyfunc + spark flavours) registered @challenger, and
per-segment metrics (an MLflow table and ``monitoring.<model>_segments``).

Promote and score it with the ordinary jobs on the derived config (`promote_segmented`,
`score_segmented`).
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from mlops_spark import registry
from mlops_spark.config import AppConfig
from mlops_spark.errors import ConfigError, UsageError
from mlops_spark.jobs.args import JobArgs
from mlops_spark.results import TrainSegmentedResult
from mlops_spark.runtime import JobContext, JobRun, run_job
from mlops_spark.segmented.training import fit_and_log_segmented


def train_segmented(
    config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None
) -> JobRun[TrainSegmentedResult]:
    """Fit one model per segment (and the global fallback) on the train range in parallel,
    tuned per segment on the validation range when ``segmented.tuning`` is set; measure
    the routed model on the test range overall and per segment; log it as one MLflow model
    and register it as ``segmented.model_name@challenger``."""
    if config.segmented is None:
        raise ConfigError("train_segmented: the config has no 'segmented:' section")
    if args.reproduce:
        raise UsageError("train_segmented: --reproduce is not supported for segmented models")

    def body(ctx: JobContext) -> TrainSegmentedResult:
        client = registry.configure(config.mlflow)
        result = fit_and_log_segmented(ctx, config)
        registry.set_alias(client, result.model, registry.CHALLENGER)
        ctx.say(f"registered {result.model.describe()} @{registry.CHALLENGER} (run {result.run_id})")
        return result

    return run_job("train_segmented", config, args.as_dict(), body, spark)
