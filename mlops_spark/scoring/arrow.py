"""The Arrow path: any scikit-learn / MLflow pyfunc model over Arrow batches.

Only the input columns travel to Python, through an iterator Arrow UDF; the model is
loaded once per Python worker process and predicts a whole batch at a time (no per-row
Python). Keys stay in the JVM.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.functions import ArrowUDFType, arrow_udf

from mlops_spark.metrics import Task
from mlops_spark.outputs import PREDICTION, PROBABILITY, check_task

Transform = Callable[[DataFrame], DataFrame]

SKLEARN = "sklearn"
PYFUNC = "python_function"

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
        from mlops_spark.scoring.arrow import predict_batch, worker_model

        model = worker_model(location, flavor)
        for arrays in batches:  # one column comes as an array, several as a tuple of arrays
            batch = arrays if isinstance(arrays, tuple) else (arrays,)
            yield predict_batch(model, flavor, names, batch, classification, threshold)

    with warnings.catch_warnings():  # the UDF type is given explicitly, not by type hints
        warnings.simplefilter("ignore", UserWarning)
        udf = arrow_udf(predict, "prediction double, probability double", ArrowUDFType.SCALAR_ITER)
    return udf(*[F.col(c) for c in names])


def with_arrow_scores(
    location: str,
    flavor: str,
    columns: Sequence[str],
    keep: Sequence[str],
    task: Task,
    threshold: float,
) -> Transform:
    """Curried: the task's output columns from a scikit-learn / pyfunc model over Arrow batches."""
    if task == "multiclass":
        raise ValueError(
            "the Arrow scoring path serves binary classifiers and regressors, not multiclass models"
        )
    classification = check_task(task) == "binary"

    def transform(df: DataFrame) -> DataFrame:
        out = arrow_scores(location, flavor, columns, classification, threshold)
        scores = [F.col(f"__scores.{PREDICTION}").alias(PREDICTION)]
        if classification:
            scores.append(F.col(f"__scores.{PROBABILITY}").alias(PROBABILITY))
        return df.select(*[F.col(c) for c in keep], out.alias("__scores")).select(
            *[F.col(c) for c in keep], *scores
        )

    return transform
