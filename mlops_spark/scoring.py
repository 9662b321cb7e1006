"""Batch scoring transforms: typed model inputs -> prediction and probability -> rows with lineage.

Three ways to put a model's output next to the rows, from fastest to most general:

* `with_compiled_scores`: the model compiled to SQL expressions (`mlops_spark.compile`),
  evaluated by Spark's generated code over only the input columns.
* `with_mllib_scores`: a pyspark.ml model's own ``transform`` (JVM, no Python workers),
  keeping only the prediction and the positive-class probability, so no vector column
  outlives the projection.
* `with_arrow_scores`: any scikit-learn / MLflow pyfunc model, fed Arrow batches of only the
  input columns by an iterator Arrow UDF; the model is loaded once per Python worker process
  and predicts a whole batch at a time (no per-row Python). Keys stay in the JVM.

Each returns the kept columns plus ``prediction`` and ``probability`` (double; probability
is null for regressors), which `lineage_rows` turns into the predictions table's rows.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.compile import CompiledModel
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

Transform = Callable[[DataFrame], DataFrame]

SKLEARN = "sklearn"
PYFUNC = "python_function"


def typed_inputs(keep: Sequence[str], columns: Sequence[tuple[str, T.DataType]]) -> Transform:
    """Curried: only ``keep`` (keys) and the model's inputs, cast to the types it was trained on
    (an input that is also a key, such as the date, is kept once, as it is)."""
    inputs = [(c, t) for c, t in columns if c not in keep]

    def transform(df: DataFrame) -> DataFrame:
        return df.select(*[F.col(c) for c in keep], *[F.col(c).cast(t).alias(c) for c, t in inputs])

    return transform


def with_compiled_scores(compiled: CompiledModel, keep: Sequence[str]) -> Transform:
    """Curried: prediction and probability from the model compiled to SQL."""
    probability = compiled.probability if compiled.probability is not None else F.lit(None)

    def transform(df: DataFrame) -> DataFrame:
        return df.select(
            *[F.col(c) for c in keep],
            compiled.prediction.cast("double").alias("prediction"),
            probability.cast("double").alias("probability"),
        )

    return transform


def with_mllib_scores(model: Any, keep: Sequence[str], classification: bool) -> Transform:
    """Curried: prediction and positive-class probability from a pyspark.ml model's transform."""
    probability = positive_probability(PROBABILITY) if classification else F.lit(None)

    def transform(df: DataFrame) -> DataFrame:
        return model.transform(df).select(
            *[F.col(c) for c in keep],
            F.col(PREDICTION).cast("double").alias("prediction"),
            probability.cast("double").alias("probability"),
        )

    return transform


def lineage_rows(
    scored: DataFrame,
    entity_id: str,
    date_column: str,
    model: ModelRef,
    job_run_id: str,
    scored_at: Column | None = None,
    extra: tuple[str, ...] = (),
) -> DataFrame:
    """The predictions table's rows from ``prediction``/``probability`` columns: keys,
    prediction, probability, model name, version, MLflow run id, scored_at, job run id."""
    return scored.select(
        F.col(entity_id),
        F.col(date_column),
        *[F.col(c) for c in extra],
        F.col("prediction").cast("double").alias("prediction"),
        F.col("probability").cast("double").alias("probability"),
        F.lit(model.name).alias("model_name"),
        F.lit(model.version).cast("int").alias("model_version"),
        F.lit(model.run_id).alias("model_run_id"),
        (scored_at if scored_at is not None else F.current_timestamp()).alias("scored_at"),
        F.lit(job_run_id).alias("job_run_id"),
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
    """Keep only what the predictions table stores from a pyspark.ml ``transform`` output:
    keys, prediction, positive-class probability, lineage."""
    probability = positive_probability(PROBABILITY) if classification else F.lit(None)
    with_scores = scored.withColumn("__probability", probability.cast("double")).select(
        F.col(entity_id),
        F.col(date_column),
        *[F.col(c) for c in extra],
        F.col(PREDICTION).cast("double").alias("prediction"),
        F.col("__probability").alias("probability"),
    )
    return lineage_rows(with_scores, entity_id, date_column, model, job_run_id, scored_at, extra)


# --------------------------------------------------------------------------- Arrow path

_WORKER_MODELS: dict[str, Any] = {}


def worker_model(location: str, flavor: str) -> Any:
    """The model saved at ``location``, loaded once per Python worker process.

    Spark reuses Python workers across tasks, so a module-level cache turns "once per
    task" into "once per worker". On a cluster the folder arrives through
    ``SparkContext.addFile`` and is found by its name.
    """
    model = _WORKER_MODELS.get(location)
    if model is None:
        path = location
        if not os.path.exists(path):
            from pyspark import SparkFiles

            path = SparkFiles.get(os.path.basename(location.rstrip("/")))
        if flavor == SKLEARN:
            import mlflow.sklearn

            model = mlflow.sklearn.load_model(path)
        else:
            import mlflow.pyfunc

            model = mlflow.pyfunc.load_model(path)
        _WORKER_MODELS[location] = model
    return model


def predict_batch(
    model: Any,
    flavor: str,
    columns: Sequence[str],
    arrays: Sequence[Any],
    classification: bool,
    threshold: float,
) -> Any:
    """One Arrow batch of inputs -> a struct array (prediction, probability)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    frame = pd.DataFrame({c: a.to_numpy(zero_copy_only=False) for c, a in zip(columns, arrays, strict=True)})
    n = len(frame)
    probability: Any = np.full(n, np.nan)
    probability_valid = False
    if flavor == SKLEARN and classification and hasattr(model, "predict_proba"):
        classes = list(model.classes_)
        probability = np.asarray(model.predict_proba(frame)[:, 1], dtype="float64")
        probability_valid = True
        prediction = np.where(probability > threshold, float(classes[1]), float(classes[0]))
    else:
        out = model.predict(frame)
        if isinstance(out, pd.DataFrame):
            if "probability" in out.columns:
                probability, probability_valid = out["probability"].to_numpy("float64"), True
            first = "prediction" if "prediction" in out.columns else out.columns[0]
            prediction = out[first].to_numpy("float64")
        else:
            values = np.asarray(out)
            if values.ndim == 2 and values.shape[1] == 2 and classification:
                probability, probability_valid = values[:, 1].astype("float64"), True
                prediction = np.where(probability > threshold, 1.0, 0.0)
            else:
                prediction = values.reshape(n).astype("float64")
    return pa.StructArray.from_arrays(
        [
            pa.array(prediction, type=pa.float64()),
            pa.array(probability, type=pa.float64(), mask=None if probability_valid else np.ones(n, bool)),
        ],
        names=["prediction", "probability"],
    )


def arrow_scores(
    location: str, flavor: str, columns: Sequence[str], classification: bool, threshold: float
) -> Column:
    """A struct column (prediction, probability) computed by the model at ``location`` from
    ``columns``, through an iterator Arrow UDF (only these columns travel to Python)."""
    names = list(columns)

    def predict(batches: Iterator[tuple[Any, ...]]) -> Iterator[Any]:
        from mlops_spark.scoring import predict_batch, worker_model

        model = worker_model(location, flavor)
        for arrays in batches:  # one column comes as an array, several as a tuple of arrays
            batch = arrays if isinstance(arrays, tuple) else (arrays,)
            yield predict_batch(model, flavor, names, batch, classification, threshold)

    with warnings.catch_warnings():  # the UDF type is given explicitly, not by type hints
        warnings.simplefilter("ignore", UserWarning)
        udf = F.arrow_udf(  # type: ignore[call-overload]
            predict, "prediction double, probability double", F.ArrowUDFType.SCALAR_ITER
        )
    return udf(*[F.col(c) for c in names])  # type: ignore[no-any-return]


def with_arrow_scores(
    location: str,
    flavor: str,
    columns: Sequence[str],
    keep: Sequence[str],
    classification: bool,
    threshold: float,
) -> Transform:
    """Curried: prediction and probability from a scikit-learn / pyfunc model over Arrow batches."""

    def transform(df: DataFrame) -> DataFrame:
        out = arrow_scores(location, flavor, columns, classification, threshold)
        return df.select(*[F.col(c) for c in keep], out.alias("__scores")).select(
            *[F.col(c) for c in keep],
            F.col("__scores.prediction").alias("prediction"),
            F.col("__scores.probability").alias("probability"),
        )

    return transform
