"""Task types end to end: what model.task 'auto' infers, the clear errors when the label does
not fit, and a multiclass and a regression model trained, gated, scored (compiled, equal to
their own transform) and monitored by the ordinary jobs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops_spark import lake, registry
from mlops_spark.catalog import Catalog
from mlops_spark.config import AppConfig, ModelConfig
from mlops_spark.errors import ConfigError, DataQualityError
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.monitor import monitor
from mlops_spark.jobs.promote import promote
from mlops_spark.jobs.score import score
from mlops_spark.jobs.train import train
from mlops_spark.tasks import LabelProfile, infer_task

DAY0 = dt.date(2024, 5, 1)
DAYS = [DAY0 + dt.timedelta(days=i) for i in range(12)]


def profile(*values: float) -> LabelProfile:
    return LabelProfile(rows=100, numeric=True, values=tuple(sorted(values)))


def test_auto_infers_the_task_from_the_training_labels() -> None:
    classifier = ModelConfig(numeric=["x"])
    assert infer_task(classifier, profile(0, 1), "features.t", "y") == "binary"
    assert infer_task(classifier, profile(0, 1, 2, 3), "features.t", "y") == "multiclass"
    regressor = ModelConfig(estimator="gbt_regressor", numeric=["x"])
    assert infer_task(regressor, profile(1.5, 2.25, 7.0), "features.t", "y") == "regression"
    assert regressor.resolved_task == "regression" and classifier.resolved_task == "binary"


@pytest.mark.parametrize(
    ("model", "labels", "error", "message"),
    [
        ({}, profile(1.0), DataQualityError, r"features.label 'y' of features.t has one class only \(1\)"),
        (
            {},
            profile(1.5, 2.5),
            ConfigError,
            r"has values 1.5, 2.5: model.task 'auto' with logistic_regression",
        ),
        ({}, profile(1, 2, 3), ConfigError, r"needs class indices 0..K-1"),
        ({"task": "binary"}, profile(0, 1, 2), ConfigError, r"model.task is 'binary' but .* has 3 classes"),
        (
            {"estimator": "gbt_classifier"},
            profile(0, 1, 2),
            ConfigError,
            r"gbt_classifier fits two classes only",
        ),
        (
            {},
            LabelProfile(rows=9, numeric=False, values=(float("nan"),)),
            ConfigError,
            r"is not numeric: .* map it in features.label.expr",
        ),
    ],
)
def test_a_label_that_does_not_fit_the_task_is_one_clear_error(
    model: dict[str, Any], labels: LabelProfile, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        infer_task(ModelConfig.model_validate({"numeric": ["x"], **model}), labels, "features.t", "y")


def test_the_task_and_the_estimator_must_agree_in_the_config() -> None:
    with pytest.raises(ValueError, match="task 'regression' needs a regressor"):
        ModelConfig(task="regression", estimator="random_forest_classifier", numeric=["x"])
    with pytest.raises(ValueError, match="gbt_classifier' fits two classes only"):
        ModelConfig(task="multiclass", estimator="gbt_classifier", numeric=["x"])


# --------------------------------------------------------------------------- end to end


def synthetic(spark: SparkSession, target: str) -> DataFrame:
    """Seeded rows: three classes (multiclass) or a number (regression) from x1, x2 and seg."""
    rng = np.random.default_rng(21)
    rows = []
    for day in DAYS:
        n = 90
        x1, x2 = rng.normal(0, 1, n), rng.normal(0, 1, n)
        seg = rng.choice(["a", "b", "c"], n)
        shift = np.where(seg == "c", 0.8, 0.0)
        if target == "cls":
            score = np.stack([x1 + shift, x2, -x1 - x2], axis=1) + rng.gumbel(0, 0.6, (n, 3))
            y = score.argmax(axis=1).astype(float)
        else:
            y = 3.0 * x1 - 2.0 * x2 + 4.0 * shift + rng.normal(0, 0.5, n)
        for k in range(n):
            rows.append((f"{day}-{k}", day, str(seg[k]), float(x1[k]), float(x2[k]), float(y[k])))
    return spark.createDataFrame(
        rows, f"id string, date date, seg string, x1 double, x2 double, {target} double"
    )


def config_for(lake_root: str, store: dict[str, str], target: str, model: dict[str, Any]) -> AppConfig:
    return AppConfig.model_validate(
        {
            "lake": {"root": lake_root},
            "spark": {"master": "local[2]", "shuffle_partitions": 2},
            "mlflow": {**store, "experiment": f"tasks-{target}", "model_name": f"tasks_{target}"},
            "features": {
                "name": "tasks",
                "base_table": "events",
                "entity_id": {"name": "id", "expr": "id"},
                "event_time": "date",
                "label": {"name": target, "expr": target},
            },
            "model": {"categorical": ["seg"], "numeric": ["x1", "x2"], "scale": True, **model},
            "split": {
                "train": {"from": str(DAYS[0]), "to": str(DAYS[6])},
                "test": {"from": str(DAYS[7]), "to": str(DAYS[9])},
            },
            "promotion": {"metric": None, "thresholds": {}},
            "monitoring": {"columns": ["seg", "x1", "x2"], "windows": [3], "report": False},
        }
    )


@pytest.mark.parametrize(
    ("target", "model", "metric"),
    [
        ("cls", {"estimator": "logistic_regression", "params": {"maxIter": 30}}, "macro_f1"),
        (
            "cls",
            {"estimator": "random_forest_classifier", "params": {"numTrees": 5, "maxDepth": 4}},
            "macro_f1",
        ),
        ("value", {"estimator": "gbt_regressor", "params": {"maxIter": 8, "maxDepth": 3}}, "rmse"),
    ],
)
def test_multiclass_and_regression_models_go_through_every_job(
    spark: SparkSession,
    lake_root: str,
    mlflow_store: dict[str, str],
    target: str,
    model: dict[str, Any],
    metric: str,
) -> None:
    config = config_for(lake_root, mlflow_store, target, model)
    catalog = Catalog(config)
    lake.write_partitions(synthetic(spark, target), catalog.features(), DAYS)
    trained = train(config, JobArgs(), spark).result
    expected_task = "multiclass" if target == "cls" else "regression"
    assert trained.task == expected_task and trained.model is not None
    run = registry.configure(config.mlflow).get_run(trained.run_id)
    assert run.data.params["task"] == expected_task
    assert f"test_{metric}" in trained.metrics

    gate = promote(config, JobArgs(), spark).result
    assert gate.decision == "promoted" and gate.detail is not None and gate.detail.metric == metric

    scored = score(config, JobArgs(), spark).result
    assert scored.method == "compiled" and scored.scored_partitions == len(DAYS)
    preds, _ = lake.read_table(spark, catalog.predictions())
    outputs = {"cls": ["prediction", "probabilities"], "value": ["prediction"]}[target]
    assert [c for c in preds.columns if c.startswith("prob") or c == "prediction"] == outputs
    # compiled scoring equals the model's own transform
    fitted = registry.load_spark_model(trained.model)
    features, _ = lake.read_table(spark, catalog.features())
    own = fitted.transform(features).select(
        "id",
        "prediction",
        *([vector_to_array("probability").alias("probabilities")] if target == "cls" else []),
    )
    assertDataFrameEqual(preds.select("id", *outputs), own, rtol=0.0, atol=1e-12)

    monitored = monitor(config, JobArgs(), spark).result
    assert monitored.monitored_partitions == len(DAYS)
    table, _ = lake.read_table(spark, catalog.monitoring())
    quality = {
        r["metric"] for r in table.where((F.col("kind") == "quality") & (F.col("slice") == "all")).collect()
    }
    assert {metric, "rows"} <= quality
    drift_columns = {r["column"] for r in table.where(F.col("kind") == "drift").collect()}
    assert "prediction" in drift_columns and {"seg", "x1", "x2"} <= drift_columns


def test_predictions_of_a_regressor_have_no_probability_column(spark: SparkSession) -> None:
    """The lineage rows carry only the columns a task produces."""
    from mlops_spark.registry import ModelRef
    from mlops_spark.scoring import lineage_rows

    rows = spark.createDataFrame([("a", DAY0, 1.5)], "id string, date date, prediction double")
    out = lineage_rows(rows, ("id", "date"), "regression", ModelRef("m", 1, "r"), "job")
    assert "probability" not in out.columns and out.columns[:3] == ["id", "date", "prediction"]
    with pytest.raises(TypeError, match="not the string"):
        lineage_rows(rows, "id", "regression", ModelRef("m", 1, "r"), "job")  # type: ignore[arg-type]


def test_a_regressor_scored_by_its_own_transform_and_by_ab_arms_has_no_probability_column(
    spark: SparkSession,
) -> None:
    """The transform path and the A/B-routed rows (the compiled path is covered above): a real
    MLlib regressor's predictions table rows carry ``prediction`` and lineage, nothing else."""
    from pyspark.sql import types as T

    from mlops_spark.outputs import with_mllib_outputs
    from mlops_spark.registry import ModelRef
    from mlops_spark.scoring import lineage_rows
    from mlops_spark.scoring.ab import routed_rows
    from mlops_spark.scoring.scorer import Scorer
    from mlops_spark.training import build_pipeline

    rows = synthetic(spark, "value").where(F.col("date") <= DAYS[1])
    model = ModelConfig(
        estimator="decision_tree_regressor", categorical=["seg"], numeric=["x1", "x2"], params={"maxDepth": 3}
    )
    fitted = build_pipeline(model, "value").fit(rows)
    inputs = (("seg", T.StringType()), ("x1", T.DoubleType()), ("x2", T.DoubleType()))
    keys = ("id", "date")
    arms = tuple(
        Scorer(
            ModelRef("temps", v, f"run{v}"),
            "transform",
            "test",
            "regression",
            inputs,
            lambda keep: with_mllib_outputs(fitted, keep, "regression"),
        )
        for v in (1, 2)
    )
    at = F.lit(dt.datetime(2024, 6, 1)).cast("timestamp")
    single = lineage_rows(rows.transform(arms[0].score(keys)), keys, "regression", arms[0].model, "job1", at)
    own = fitted.transform(rows).select(
        "id",
        "date",
        "prediction",
        F.lit("temps").alias("model_name"),
        F.lit(1).alias("model_version"),
        F.lit("run1").alias("model_run_id"),
        at.alias("scored_at"),
        F.lit("job1").alias("job_run_id"),
    )
    assertDataFrameEqual(single, own)
    assert single.columns == own.columns  # no probability column, not even an all-null one

    routed = routed_rows(rows, keys, "id", (arms[0], arms[1]), 0.5, "salt", "job1")
    assert routed.columns == ["id", "date", "arm", "prediction", *own.columns[3:-1], "job_run_id"]
    assert routed.count() == rows.count()
    assert {r["arm"] for r in routed.select("arm").distinct().collect()} == {"champion", "challenger"}
