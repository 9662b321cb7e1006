"""Scoring transforms: typed model inputs -> the task's output columns -> rows with lineage.

Three ways to put a model's output next to the rows, from fastest to most general:
`with_compiled_scores` (the model compiled to SQL, `mlops_spark.compile`),
`mlops_spark.outputs.with_mllib_outputs` (a pyspark.ml model's own ``transform``) and
`mlops_spark.scoring.arrow.with_arrow_scores` (any scikit-learn / pyfunc model). Each
returns the kept columns plus the task's output columns (`mlops_spark.outputs`), which
`lineage_rows` turns into the predictions table's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.compile import CompiledModel
from mlops_spark.metrics import Task
from mlops_spark.outputs import PREDICTION, PROBABILITIES, PROBABILITY, output_columns
from mlops_spark.registry import ModelRef

Transform = Callable[[DataFrame], DataFrame]

LINEAGE_COLUMNS = ("model_name", "model_version", "model_run_id", "scored_at", "job_run_id")


def typed_inputs(keep: Sequence[str], columns: Sequence[tuple[str, T.DataType]]) -> Transform:
    """Curried: only ``keep`` (keys) and the model's inputs, cast to the types it was trained on
    (an input that is also a key, such as the date, is kept once, as it is)."""
    inputs = [(c, t) for c, t in columns if c not in keep]

    def transform(df: DataFrame) -> DataFrame:
        return df.select(*[F.col(c) for c in keep], *[F.col(c).cast(t).alias(c) for c, t in inputs])

    return transform


def with_compiled_scores(compiled: CompiledModel, keep: Sequence[str]) -> Transform:
    """Curried: the output columns from the model compiled to SQL."""

    def transform(df: DataFrame) -> DataFrame:
        df = compiled.with_layers(df)
        scores = [compiled.prediction.cast("double").alias(PREDICTION)]
        if compiled.probability is not None:
            scores.append(compiled.probability.cast("double").alias(PROBABILITY))
        if compiled.probabilities is not None:
            scores.append(compiled.probabilities.alias(PROBABILITIES))
        return df.select(*[F.col(c) for c in keep], *scores)

    return transform


def lineage_rows(
    scored: DataFrame,
    keys: Sequence[str],
    task: Task,
    model: ModelRef,
    job_run_id: str,
    scored_at: Column | None = None,
) -> DataFrame:
    """The predictions table's rows: ``keys``, the task's output columns (no probability
    column for a regressor), model name, version, MLflow run id, scored_at, job run id."""
    if isinstance(keys, str):
        raise TypeError(f"lineage_rows: keys must be a sequence of column names, not the string {keys!r}")
    outputs = output_columns(task)
    typed = [F.col(c).cast("double").alias(c) if c != "probabilities" else F.col(c) for c in outputs]
    return scored.select(
        *[F.col(c) for c in keys],
        *typed,
        F.lit(model.name).alias("model_name"),
        F.lit(model.version).cast("int").alias("model_version"),
        F.lit(model.run_id).alias("model_run_id"),
        (scored_at if scored_at is not None else F.current_timestamp()).alias("scored_at"),
        F.lit(job_run_id).alias("job_run_id"),
    )
