"""The contract of a model's output columns, whatever produced them.

Every scoring path (compiled SQL, pyspark.ml transform, Arrow batches, the segment router)
and every evaluation produce the same columns, by task:

* binary: ``prediction`` (0/1 as double) and ``probability`` (P(1), double);
* multiclass: ``prediction`` (class index as double) and ``probabilities`` (array of the
  class probabilities, index = class);
* regression: ``prediction`` only (no probability column at all).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mlops_spark.metrics import Task

PREDICTION = "prediction"
PROBABILITY = "probability"
PROBABILITIES = "probabilities"

Transform = Callable[[DataFrame], DataFrame]


TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")


def check_task(task: str) -> Task:
    """``task`` itself when it is one of `TASKS`; a ValueError naming it otherwise."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (expected one of: {', '.join(TASKS)})")
    return task


def output_columns(task: Task) -> tuple[str, ...]:
    """The output columns a task's predictions carry, in order."""
    check_task(task)
    if task == "binary":
        return (PREDICTION, PROBABILITY)
    if task == "multiclass":
        return (PREDICTION, PROBABILITIES)
    return (PREDICTION,)


def positive_probability(vector_column: str = PROBABILITY) -> Column:
    """P(class 1) from pyspark.ml's probability vector."""
    return vector_to_array(F.col(vector_column)).getItem(1)


def mllib_outputs(task: Task, vector_column: str = PROBABILITY) -> list[Column]:
    """The task's output columns from a pyspark.ml ``transform`` result."""
    check_task(task)
    cols = [F.col(PREDICTION).cast("double").alias(PREDICTION)]
    if task == "binary":
        cols.append(positive_probability(vector_column).cast("double").alias(PROBABILITY))
    elif task == "multiclass":
        cols.append(vector_to_array(F.col(vector_column)).alias(PROBABILITIES))
    return cols


def with_mllib_outputs(model: Any, keep: Sequence[str], task: Task) -> Transform:
    """Curried: ``keep`` plus the task's output columns from a fitted pyspark.ml model (no
    vector column outlives the projection)."""

    def transform(df: DataFrame) -> DataFrame:
        return model.transform(df).select(*[F.col(c) for c in keep], *mllib_outputs(task))  # type: ignore[no-any-return]

    return transform
