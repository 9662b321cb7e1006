"""Batch scoring transforms: model output -> prediction rows with lineage."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mlops_spark.registry import ModelRef
from mlops_spark.training import PREDICTION, PROBABILITY, positive_probability

PREDICTION_COLUMNS = (
    "prediction",
    "probability",
    "model_name",
    "model_version",
    "model_run_id",
    "scored_at",
    "job_run_id",
)


def prediction_rows(
    scored: DataFrame,
    entity_id: str,
    date_column: str,
    model: ModelRef,
    job_run_id: str,
    classification: bool,
    scored_at: Column | None = None,
    extra: tuple[str, ...] = (),
) -> DataFrame:
    """Keep only what the predictions table stores: keys, prediction, lineage."""
    probability = positive_probability(PROBABILITY) if classification else F.lit(None).cast("double")
    return scored.select(
        F.col(entity_id),
        F.col(date_column),
        *[F.col(c) for c in extra],
        F.col(PREDICTION).cast("double").alias("prediction"),
        probability.alias("probability"),
        F.lit(model.name).alias("model_name"),
        F.lit(model.version).cast("int").alias("model_version"),
        F.lit(model.run_id).alias("model_run_id"),
        (scored_at if scored_at is not None else F.current_timestamp()).alias("scored_at"),
        F.lit(job_run_id).alias("job_run_id"),
    )
