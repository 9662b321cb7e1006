"""score_segmented: the score job run on the segmented model (``segmented:`` section).

The segmented model is registered with a spark flavour (a `PipelineModel` whose one stage
routes rows to their segment's scikit-learn model through ``mapInArrow``), so the ordinary
score job scores it once the config points at it: same incremental partitions, same
predictions schema and lineage, written to ``predictions.<segmented.predictions_table or
segmented.model_name>``.
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from mlops_spark.config import AppConfig
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.score import score
from mlops_spark.results import ScoreResult
from mlops_spark.runtime import JobRun
from mlops_spark.segmented.spec import segmented_app_config


def score_segmented(
    config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None
) -> JobRun[ScoreResult]:
    """`score` with the config pointed at the segmented model (its name, table and inputs)."""
    return score(segmented_app_config(config), args, spark, job="score_segmented")


__all__ = ["score_segmented"]
