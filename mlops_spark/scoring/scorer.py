"""Choosing how a registered model scores: the fastest path that is exact.

A pyspark.ml pipeline compiled to Spark SQL, else its own transform; a scikit-learn model
compiled to SQL, else (and for any pyfunc model) Arrow batches through a model loaded once
per Python worker. `prepare_scorer` loads the model once, checks that the feature table
has every input the model's signature names, and returns a `Scorer`: the path, why, the
typed inputs and a curried scoring transform that every caller (the score job, canary
shadow scoring, monitoring's reference) applies the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from mlops_spark import registry
from mlops_spark.compile import (
    NotCompilableError,
    compile_sklearn_model,
    compile_spark_model,
    sklearn_tree_nodes,
    tree_nodes,
)
from mlops_spark.config import ModelConfig
from mlops_spark.errors import JobFailed, MissingColumnError
from mlops_spark.metrics import Task
from mlops_spark.outputs import with_mllib_outputs
from mlops_spark.scoring.arrow import PYFUNC, SKLEARN, with_arrow_scores
from mlops_spark.scoring.transforms import typed_inputs, with_compiled_scores

Method = Literal["auto", "compiled", "transform", "arrow"]
Transform = Callable[[DataFrame], DataFrame]


class ModelInputMissingError(MissingColumnError):
    """The feature table lacks a column that the model's input signature needs."""

    def __init__(self, table: str, column: str, model: str, available: Sequence[str]) -> None:
        super().__init__(table, column, list(available))
        self.args = (
            f"table {table!r} has no column {column!r}, which {model} needs (its input signature); "
            f"add it to the features spec and rerun the features job, or score with a model "
            f"trained without it (the table has: {', '.join(sorted(available))})",
        )


@dataclass(frozen=True)
class Scorer:
    """How this run scores: the path, why, the typed inputs and the scoring transform."""

    model: registry.ModelRef
    method: str
    detail: str
    task: Task
    inputs: tuple[tuple[str, T.DataType], ...]
    scores: Callable[[Sequence[str]], Transform]

    def score(self, keep: Sequence[str]) -> Transform:
        """Curried: ``keep`` plus the task's output columns, from rows that carry the inputs."""
        scoring = self.scores(keep)

        def transform(df: DataFrame) -> DataFrame:
            return df.transform(typed_inputs(keep, self.inputs)).transform(scoring)

        return transform


def model_inputs(
    model: ModelConfig, signature: list[tuple[str, T.DataType]] | None, spark_flavor: bool
) -> list[tuple[str, T.DataType]]:
    """The columns the model reads, typed as in training: for Spark pipelines the config's
    categorical (string) and numeric (double) inputs; else the signature's types."""
    typed: dict[str, T.DataType] = {c: T.StringType() for c in model.categorical}
    typed.update({c: T.DoubleType() for c in model.numeric})
    if signature is None:
        return list(typed.items())
    if not spark_flavor:
        return [(n, T.DoubleType() if isinstance(t, T.NumericType) else t) for n, t in signature]
    return [(n, typed.get(n, t)) for n, t in signature]


def prepare_scorer(
    spark: SparkSession,
    model: ModelConfig,
    ref: registry.ModelRef,
    features: DataFrame,
    table: str,
    method: Method = "auto",
    max_tree_nodes: int = 200,
) -> Scorer:
    """Load the model, check the feature table has its inputs, pick the scoring path."""
    flavors, signature = registry.model_description(ref)
    spark_flavor = "spark" in flavors
    inputs = tuple(model_inputs(model, signature, spark_flavor))
    for column, _ in inputs:
        if column not in features.columns:
            raise ModelInputMissingError(table, column, ref.describe(), features.columns)
    if spark_flavor:
        return _spark_scorer(ref, model, inputs, method, max_tree_nodes)
    return _python_scorer(spark, ref, model, inputs, flavors, method, max_tree_nodes)


def _too_big(nodes: int, limit: int) -> str:
    return (
        f"{nodes} tree nodes: above {limit}, compiled SQL runs slower than the model's own code "
        "(scoring.max_compiled_tree_nodes)"
    )


def _refuse(ref: registry.ModelRef, exc: NotCompilableError) -> JobFailed:
    return JobFailed(f"score: {ref.describe()} does not compile to SQL: {exc}")


def _spark_scorer(
    ref: registry.ModelRef,
    model: ModelConfig,
    inputs: tuple[tuple[str, T.DataType], ...],
    method: Method,
    max_tree_nodes: int,
) -> Scorer:
    if method == "arrow":
        raise JobFailed(f"score: {ref.describe()} is a Spark model; use method auto, compiled or transform")
    fitted = registry.load_spark_model(ref)
    reason = f"method={method}"
    task = model.resolved_task
    nodes = tree_nodes(fitted)
    if method == "auto" and nodes > max_tree_nodes:
        reason = _too_big(nodes, max_tree_nodes)
    elif method in ("auto", "compiled"):
        schema = T.StructType([T.StructField(n, t) for n, t in inputs])
        try:
            compiled = compile_spark_model(fitted, schema)
        except NotCompilableError as exc:
            if method == "compiled":
                raise _refuse(ref, exc) from None
            reason = f"not compilable: {exc}"
        else:
            return Scorer(
                ref,
                "compiled",
                f"Spark SQL from {compiled.describe()}",
                task,
                inputs,
                lambda keep: with_compiled_scores(compiled, keep),
            )
    return Scorer(
        ref,
        "transform",
        f"pyspark.ml transform, {reason}",
        task,
        inputs,
        lambda keep: with_mllib_outputs(fitted, keep, task),
    )


def _python_scorer(
    spark: SparkSession,
    ref: registry.ModelRef,
    model: ModelConfig,
    inputs: tuple[tuple[str, T.DataType], ...],
    flavors: dict[str, Any],
    method: Method,
    max_tree_nodes: int,
) -> Scorer:
    if method == "transform":
        raise JobFailed(f"score: {ref.describe()} is not a Spark model; use method auto, compiled or arrow")
    flavor = SKLEARN if SKLEARN in flavors else PYFUNC
    if flavor not in flavors:
        raise JobFailed(f"score: {ref.describe()} has neither a spark, sklearn nor python_function flavour")
    task: Task = model.resolved_task
    threshold = model.threshold
    reason = f"method={method}"
    if flavor == SKLEARN:
        estimator = registry.load_sklearn_model(ref)
        task = "binary" if hasattr(estimator, "classes_") else "regression"
        nodes = sklearn_tree_nodes(estimator)
        if method == "auto" and nodes > max_tree_nodes:
            reason = _too_big(nodes, max_tree_nodes)
        elif method in ("auto", "compiled"):
            try:
                compiled = compile_sklearn_model(estimator, [n for n, _ in inputs], threshold)
            except NotCompilableError as exc:
                if method == "compiled":
                    raise _refuse(ref, exc) from None
                reason = f"not compilable: {exc}"
            else:
                return Scorer(
                    ref,
                    "compiled",
                    f"Spark SQL from scikit-learn {compiled.describe()}",
                    task,
                    inputs,
                    lambda keep: with_compiled_scores(compiled, keep),
                )
    elif method == "compiled":
        raise JobFailed(f"score: {ref.describe()} is a generic pyfunc model; it cannot be compiled to SQL")
    location = registry.ship_model(spark, ref)
    columns = [n for n, _ in inputs]
    return Scorer(
        ref,
        "arrow",
        f"{flavor} model loaded once per Python worker, Arrow batches, {reason}",
        task,
        inputs,
        lambda keep: with_arrow_scores(location, flavor, columns, keep, task, threshold),
    )
