"""promote_segmented: the promotion gate run on the segmented model (``segmented:`` section).

The gate loads @challenger and @champion with ``registry.load_spark_model`` and measures
them with ``training.evaluate_model`` on the test range; the segmented model's spark flavour
answers ``transform`` like any pyspark.ml model, so the ordinary promote job (auto, dry
run, approval, rollback) works on it once the config points at it.
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from mlops_spark.config import AppConfig
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.promote import promote
from mlops_spark.results import PromoteResult
from mlops_spark.runtime import JobRun
from mlops_spark.segmented.spec import segmented_app_config


def promote_segmented(
    config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None
) -> JobRun[PromoteResult]:
    """`promote` with the config pointed at the segmented model (its name and inputs)."""
    return promote(segmented_app_config(config), args, spark, job="promote_segmented")


__all__ = ["promote_segmented"]
