"""mlops_spark.metrics: one exact definition per metric, in Spark and on arrays, against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual
from sklearn import metrics as skm

from mlops_spark.errors import ConfigError, JobFailed
from mlops_spark.metrics import (
    METRICS,
    binary_metrics,
    evaluate,
    higher_is_better,
    local,
    multiclass_metrics,
    primary_metric,
)
from mlops_spark.metrics.frames import as_dict

RNG = np.random.default_rng(3)
N = 400
Y = RNG.integers(0, 2, N).astype(float)
# scores on a coarse grid (many ties), exact 0s and 1s (clipped in the log loss)
P = np.clip(np.round(0.35 * Y + 0.65 * RNG.random(N), 2), 0.0, 1.0)
P[:4], P[4:8] = 0.0, 1.0
YHAT = (P > 0.45).astype(float)

BINARY_SCHEMA = "g string, y double, probability double, prediction double"


def sklearn_binary(y: np.ndarray, p: np.ndarray, yhat: np.ndarray) -> dict[str, float]:
    return {
        "rows": float(len(y)),
        "positive_rate": float(y.mean()),
        "predicted_positive_rate": float(yhat.mean()),
        "mean_probability": float(p.mean()),
        "accuracy": skm.accuracy_score(y, yhat),
        "precision": skm.precision_score(y, yhat, zero_division=0),
        "recall": skm.recall_score(y, yhat, zero_division=0),
        "f1": skm.f1_score(y, yhat, zero_division=0),
        "log_loss": skm.log_loss(y, p, labels=[0.0, 1.0]),
        "brier": skm.brier_score_loss(y, p),
        "areaUnderROC": skm.roc_auc_score(y, p),
        "average_precision": skm.average_precision_score(y, p),
    }


def test_binary_metrics_equal_scikit_learn_in_spark_and_on_arrays(spark: SparkSession) -> None:
    rows = [("a", float(y), float(p), float(h)) for y, p, h in zip(Y, P, YHAT, strict=True)]
    got = evaluate(spark.createDataFrame(rows, BINARY_SCHEMA), "binary", "y")
    on_arrays = local.binary_metrics(Y, P, YHAT)
    expected = sklearn_binary(Y, P, YHAT)
    assert set(got) == set(METRICS["binary"]) == set(on_arrays)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name
        assert on_arrays[name] == pytest.approx(value, abs=1e-12), name


def test_binary_metrics_per_group_keep_a_null_group_and_drop_undefined_values(spark: SparkSession) -> None:
    rows = [("a", 1.0, 0.9, 1.0), ("a", 0.0, 0.2, 0.0), ("a", 1.0, 0.4, 0.0)]
    rows += [(None, 1.0, 0.7, 1.0), (None, 0.0, 0.8, 1.0)]
    rows += [("one-class", 1.0, 0.6, 1.0), ("one-class", 1.0, 0.3, 0.0), ("unlabelled", None, 0.5, 1.0)]
    long = binary_metrics(spark.createDataFrame(rows, BINARY_SCHEMA), "y", ["g"])
    by_group = {
        g: {r["metric"]: r["value"] for r in long.where(F.col("g").eqNullSafe(g)).collect()}
        for g in ("a", None, "one-class")
    }
    assert by_group["a"]["areaUnderROC"] == pytest.approx(skm.roc_auc_score([1, 0, 1], [0.9, 0.2, 0.4]))
    assert by_group[None]["areaUnderROC"] == 0.0 and by_group[None]["rows"] == 2
    assert "areaUnderROC" not in by_group["one-class"] and "average_precision" not in by_group["one-class"]
    assert by_group["one-class"]["recall"] == 0.5
    assert long.where(F.col("g") == "unlabelled").count() == 0  # no labelled row: no metric
    with pytest.raises(JobFailed, match="no labelled rows"):
        as_dict(long.where(F.col("g") == "unlabelled"))


def test_regression_metrics_equal_scikit_learn(spark: SparkSession) -> None:
    y = RNG.normal(3.0, 2.0, 300)
    pred = y + RNG.normal(0.2, 0.7, 300)
    df = spark.createDataFrame(
        [(float(a), float(b)) for a, b in zip(y, pred, strict=True)], "target double, prediction double"
    )
    got = evaluate(df, "regression", "target")
    on_arrays = local.regression_metrics(y, pred)
    expected = {
        "rmse": math.sqrt(skm.mean_squared_error(y, pred)),
        "mae": skm.mean_absolute_error(y, pred),
        "r2": skm.r2_score(y, pred),
        "bias": float(np.mean(pred - y)),
        "label_mean": float(y.mean()),
        "mean_prediction": float(pred.mean()),
        "rows": 300.0,
    }
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-9), name
        assert on_arrays[name] == pytest.approx(value, abs=1e-12), name
    constant = spark.createDataFrame([(1.0, 1.0), (1.0, 2.0)], "target double, prediction double")
    assert evaluate(constant, "regression", "target")["r2"] == skm.r2_score([1.0, 1.0], [1.0, 2.0]) == 0.0


def test_multiclass_metrics_equal_scikit_learn(spark: SparkSession) -> None:
    y = RNG.integers(0, 4, 500)
    proba = RNG.dirichlet(np.ones(4), 500)
    proba[:5] = [1.0, 0.0, 0.0, 0.0]  # certain and sometimes wrong: clipped in the log loss
    yhat = proba.argmax(axis=1)
    yhat[yhat == 3] = 2  # class 3 is never predicted: its precision is 0 (zero_division=0)
    schema = T.StructType(
        [
            T.StructField("y", T.DoubleType()),
            T.StructField("prediction", T.DoubleType()),
            T.StructField("probabilities", T.ArrayType(T.DoubleType())),
        ]
    )
    rows = [(float(a), float(b), [float(v) for v in pr]) for a, b, pr in zip(y, yhat, proba, strict=True)]
    got = evaluate(spark.createDataFrame(rows, schema), "multiclass", "y")
    on_arrays = local.multiclass_metrics(y, yhat, proba)
    expected = {
        "rows": 500.0,
        "accuracy": skm.accuracy_score(y, yhat),
        "macro_precision": skm.precision_score(y, yhat, average="macro", zero_division=0),
        "macro_recall": skm.recall_score(y, yhat, average="macro", zero_division=0),
        "macro_f1": skm.f1_score(y, yhat, average="macro", zero_division=0),
        "weighted_f1": skm.f1_score(y, yhat, average="weighted", zero_division=0),
        "log_loss": skm.log_loss(y, proba, labels=[0, 1, 2, 3]),
        "classes": 4.0,
    }
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name
        assert on_arrays[name] == pytest.approx(value, abs=1e-12), name
    per_group = multiclass_metrics(
        spark.createDataFrame(
            [("x", 0.0, 0.0, [0.9, 0.1]), ("x", 1.0, 0.0, [0.6, 0.4])],
            "g string, y double, prediction double, probabilities array<double>",
        ),
        "y",
        ["g"],
    )
    assertDataFrameEqual(
        per_group.where(F.col("metric").isin("accuracy", "rows")),
        spark.createDataFrame(
            [("x", "accuracy", 0.5), ("x", "rows", 2.0)], "g string, metric string, value double"
        ),
    )


def test_primary_metric_and_directions() -> None:
    assert primary_metric("binary") == ("areaUnderROC", True)
    assert primary_metric("regression") == ("rmse", False)
    assert primary_metric("multiclass", "log_loss") == ("log_loss", False)
    assert not higher_is_better("brier") and higher_is_better("macro_f1")
    with pytest.raises(
        ConfigError, match=r"promotion.metric: 'rmse' is not a binary metric \(choose one of: rows"
    ):
        primary_metric("binary", "rmse", where="promotion.metric")
