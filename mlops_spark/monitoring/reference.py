"""What monitoring watches: the feature columns and the prediction columns of a task.

What they are compared against (the champion's training rows or a fixed baseline window,
scored through the score job's own path) is profiled with the baseline: monitoring/baseline.py.
"""

from __future__ import annotations

from pyspark.sql import types as T

from mlops_spark.config import AppConfig
from mlops_spark.errors import JobFailed
from mlops_spark.outputs import PREDICTION, PROBABILITY


def monitored_columns(config: AppConfig, schema: T.StructType) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature columns: monitoring.columns or the model's inputs."""
    model = config.model
    if not config.monitoring.columns:
        return list(model.numeric), list(model.categorical)
    numeric: list[str] = []
    categorical: list[str] = []
    types = {f.name: f.dataType for f in schema.fields}
    for column in config.monitoring.columns:
        if column not in types:
            raise JobFailed(
                f"monitoring.columns: features.{config.features.name} has no column {column!r} "
                f"(it has: {', '.join(sorted(types))})"
            )
        is_number = isinstance(types[column], T.NumericType) and column not in model.categorical
        (numeric if is_number else categorical).append(column)
    return numeric, categorical


def prediction_columns(config: AppConfig) -> tuple[list[str], list[str]]:
    """(numeric, categorical) prediction columns whose drift is watched."""
    if config.model.resolved_task == "binary":
        return [PROBABILITY], [PREDICTION]
    if config.model.resolved_task == "multiclass":
        return [], [PREDICTION]
    return [PREDICTION], []
