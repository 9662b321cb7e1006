"""Per-segment metrics of scored rows, every segment in the same Spark jobs, by the shared
definitions of `mlops_spark.metrics` (so a segment's AUC is the monitor's AUC)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops_spark.metrics import METRIC, VALUE, task_metrics
from mlops_spark.outputs import PROBABILITY, positive_probability
from mlops_spark.segmented.spec import Task

SEGMENT = "segment"


def with_positive_probability(scored: DataFrame, task: Task) -> DataFrame:
    """The router's output with ``probability`` as P(1) (a double), as every metric expects."""
    if task != "binary":
        return scored
    return scored.withColumn(PROBABILITY, positive_probability(PROBABILITY))


def segment_metrics(
    scored: DataFrame, segment_column: str, label: str, task: Task, prefix: str = "test_"
) -> DataFrame:
    """One row per segment (``segment``: the value as a string, null for null segments) with a
    ``<prefix><metric>`` column per metric; ``scored`` carries the task's output columns."""
    keyed = scored.withColumn(SEGMENT, F.col(segment_column).cast("string"))
    long = task_metrics(keyed, task, label, [SEGMENT])
    wide = long.groupBy(SEGMENT).pivot(METRIC).agg(F.first(VALUE))
    return wide.select(SEGMENT, *[F.col(c).alias(f"{prefix}{c}") for c in wide.columns if c != SEGMENT])
