"""Training: estimators from config, time splits, metrics, lineage and reproduction.

Also home of the seeded synthetic feature table that the tuning and promotion tests use.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from mlops_spark import lake, registry
from mlops_spark.catalog import Table
from mlops_spark.config import AppConfig, ModelConfig, SplitConfig, resolved_dict
from mlops_spark.errors import ConfigError, JobFailed
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.train import train
from mlops_spark.lake import WriteResult
from mlops_spark.metrics import primary_metric
from mlops_spark.tasks import with_task
from mlops_spark.training import (
    WEIGHT,
    build_pipeline,
    evaluate_model,
    feature_importances,
    make_estimator,
    prepare_training_frame,
    time_split,
    with_balanced_weights,
    with_stable_layout,
)

# --------------------------------------------------------------------------- synthetic data

START = dt.date(2024, 3, 1)
TABLE = "synthetic"
SEGMENT_EFFECT = {"a": -0.6, "b": 0.0, "c": 0.6, "d": 1.2}

FEATURE_SCHEMA = T.StructType(
    [
        T.StructField("id", T.StringType(), False),
        T.StructField("date", T.DateType(), False),
        T.StructField("segment", T.StringType(), True),
        T.StructField("x1", T.DoubleType(), True),
        T.StructField("x2", T.DoubleType(), True),
        T.StructField("noise", T.DoubleType(), True),
        T.StructField("y", T.DoubleType(), True),
        T.StructField("target", T.DoubleType(), True),
    ]
)


def days(first: int, last: int) -> list[dt.date]:
    """Day numbers (1 = START) to dates, inclusive."""
    return [START + dt.timedelta(days=d - 1) for d in range(first, last + 1)]


def synthetic_rows(day: dt.date, n: int, seed: int) -> list[tuple[Any, ...]]:
    """One day of rows. The label depends on x1, x2 and segment (about 30% positive);
    `noise` carries no signal; x2 is missing on ~3% of rows. Seeded per day, so a day
    written later is the same whichever days were written before."""
    rng = np.random.default_rng([seed, day.toordinal()])
    segment = rng.choice(list(SEGMENT_EFFECT), size=n, p=[0.4, 0.3, 0.2, 0.1])
    x1, x2, noise = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    effect = np.array([SEGMENT_EFFECT[s] for s in segment])
    logit = -1.2 + 1.8 * x1 - 1.2 * x2 + effect
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(float)
    target = 3.0 * x1 - 2.0 * x2 + 2.0 * effect + rng.normal(scale=0.5, size=n)
    missing = rng.random(n) < 0.03
    return [
        (
            f"{day.isoformat()}-{i:04d}",
            day,
            str(segment[i]),
            float(x1[i]),
            None if missing[i] else float(x2[i]),
            float(noise[i]),
            float(y[i]),
            float(target[i]),
        )
        for i in range(n)
    ]


def synthetic_frame(
    spark: SparkSession, dates: list[dt.date], rows_per_day: int = 120, seed: int = 7
) -> DataFrame:
    rows = [r for d in dates for r in synthetic_rows(d, rows_per_day, seed)]
    return spark.createDataFrame(rows, schema=FEATURE_SCHEMA)


def write_features(
    spark: SparkSession, lake_root: str, dates: list[dt.date], rows_per_day: int = 120, seed: int = 7
) -> WriteResult:
    """Write (or replace) these days of the synthetic feature table in the temp lake."""
    df = synthetic_frame(spark, dates, rows_per_day, seed)
    return lake.write_partitions(df, features_table(lake_root), dates)


def features_table(lake_root: str) -> Table:
    return Table.at(f"{lake_root}/features/{TABLE}", "date", f"features.{TABLE}")


def synthetic_config(
    lake_root: str,
    mlflow_store: dict[str, str],
    model: dict[str, Any] | None = None,
    split: dict[str, Any] | None = None,
    promotion: dict[str, Any] | None = None,
    label: str = "y",
    model_name: str = "synthetic_model",
) -> AppConfig:
    """An AppConfig over the synthetic table: train days 1-8, validation 9-10, test 11-14."""
    model_cfg: dict[str, Any] = {
        "estimator": "logistic_regression",
        "params": {"maxIter": 10},
        "categorical": ["segment"],
        "numeric": ["x1", "x2", "noise"],
        "scale": True,
        **(model or {}),
    }
    split_cfg = split or {
        "train": {"from": days(1, 1)[0], "to": days(8, 8)[0]},
        "validation": {"from": days(9, 9)[0], "to": days(10, 10)[0]},
        "test": {"from": days(11, 11)[0], "to": days(14, 14)[0]},
        "seed": 11,
    }
    return AppConfig.model_validate(
        {
            "project": "synthetic",
            "lake": {"root": lake_root},
            "spark": {"master": "local[2]", "shuffle_partitions": 2},
            "mlflow": {
                "tracking_uri": mlflow_store["tracking_uri"],
                "artifact_location": mlflow_store["artifact_location"],
                "experiment": "synthetic",
                "model_name": model_name,
            },
            "features": {
                "name": TABLE,
                "base_table": "events",
                "entity_id": {"name": "id", "expr": "id"},
                "date_column": "date",
                "event_time": "date",
                "label": {"name": label, "expr": label},
            },
            "model": model_cfg,
            "split": split_cfg,
            "promotion": promotion or {"metric": "areaUnderROC", "thresholds": {"areaUnderROC": 0.55}},
        }
    )


# --------------------------------------------------------------------------- pure parts

SPLIT = SplitConfig.model_validate(
    {
        "train": {"from": "2024-03-01", "to": "2024-03-02"},
        "validation": {"from": "2024-03-03", "to": "2024-03-03"},
        "test": {"from": "2024-03-04", "to": "2024-03-05"},
    }
)


def test_time_split_assigns_each_row_to_its_date_range(spark: SparkSession) -> None:
    schema = T.StructType([T.StructField("id", T.IntegerType()), T.StructField("date", T.DateType())])
    rows = [(i, dt.date(2024, 2, 29) + dt.timedelta(days=i)) for i in range(7)]  # 02-29 .. 03-06
    parts = time_split(spark.createDataFrame(rows, schema), "date", SPLIT)

    def expect(*ids: int) -> DataFrame:
        return spark.createDataFrame([r for r in rows if r[0] in ids], schema)

    assertDataFrameEqual(parts.train, expect(1, 2))
    assert parts.validation is not None
    assertDataFrameEqual(parts.validation, expect(3))
    assertDataFrameEqual(parts.test, expect(4, 5))
    no_val = SplitConfig.model_validate({"train": SPLIT.train.model_dump(), "test": SPLIT.test.model_dump()})
    assert time_split(spark.createDataFrame(rows, schema), "date", no_val).validation is None


def test_split_ranges_must_not_overlap() -> None:
    with pytest.raises(ValueError, match="'test' must start after 'validation' ends"):
        SplitConfig.model_validate(
            {
                "train": {"from": "2024-03-01", "to": "2024-03-02"},
                "validation": {"from": "2024-03-03", "to": "2024-03-04"},
                "test": {"from": "2024-03-04", "to": "2024-03-05"},
            }
        )


def test_stable_layout_depends_on_the_rows_not_on_how_they_arrived(spark: SparkSession) -> None:
    schema = T.StructType([T.StructField("id", T.StringType()), T.StructField("date", T.DateType())])
    rows = [(f"e{i % 7}", dt.date(2024, 3, 1 + i // 7)) for i in range(40)]
    one_file = spark.createDataFrame(rows, schema).coalesce(1)
    many_files = spark.createDataFrame(list(reversed(rows)), schema).repartition(5)
    layout = with_stable_layout(3, ["id", "date"])

    def partitions(df: DataFrame) -> list[list[tuple[Any, ...]]]:
        return [[tuple(r) for r in part] for part in df.transform(layout).rdd.glom().collect()]

    assert partitions(one_file) == partitions(many_files)
    assert len(partitions(one_file)) == 3
    assert all(part == sorted(part) for part in partitions(one_file))


def test_balanced_weights_make_both_classes_weigh_the_same(spark: SparkSession) -> None:
    schema = T.StructType([T.StructField("y", T.DoubleType())])
    df = spark.createDataFrame([(1.0,), (0.0,), (0.0,), (0.0,)], schema)
    weighted = with_balanced_weights(df, "y", {1.0: 0.25, 0.0: 0.75})
    expected = spark.createDataFrame(
        [(1.0, 2.0), (0.0, 0.5 / 0.75), (0.0, 0.5 / 0.75), (0.0, 0.5 / 0.75)],
        T.StructType([T.StructField("y", T.DoubleType()), T.StructField(WEIGHT, T.DoubleType())]),
    )
    assertDataFrameEqual(weighted, expected)
    totals = {r["y"]: r["w"] for r in weighted.groupBy("y").agg(F.sum(WEIGHT).alias("w")).collect()}
    assert totals[1.0] == pytest.approx(totals[0.0])
    with pytest.raises(JobFailed, match="cannot balance classes"):
        with_balanced_weights(df, "y", {1.0: 1.0})


def test_the_estimator_params_table_matches_mllib(spark: SparkSession) -> None:
    """config.estimators (checked when a config loads, without Spark) is what the installed
    MLlib estimators have, name by name and TypeConverter by TypeConverter."""
    from typing import get_args

    from mlops_spark.config import EstimatorKind
    from mlops_spark.config.estimators import CONVERTERS, ESTIMATOR_PARAMS
    from mlops_spark.training.pipeline import _ESTIMATORS

    assert set(ESTIMATOR_PARAMS) == set(get_args(EstimatorKind)) == set(_ESTIMATORS)
    for kind, cls in _ESTIMATORS.items():
        real = {p.name: p.typeConverter.__name__ for p in cls().params}  # a JVM-backed instance
        table = {name: CONVERTERS[k] for name, k in ESTIMATOR_PARAMS[kind].items()}
        assert table == real, kind


def test_estimator_params_are_checked_against_the_estimator() -> None:
    model = ModelConfig(estimator="random_forest_classifier", numeric=["x1"], params={"numTrees": 3})
    assert make_estimator(model, "y").getNumTrees() == 3
    with pytest.raises(ConfigError, match=r"model.params.numTree: random_forest_classifier has no parameter"):
        make_estimator(model.model_copy(update={"params": {"numTree": 3}}), "y")
    with pytest.raises(ConfigError, match="not a binary metric"):
        primary_metric(model.resolved_task, "rmse", where="promotion.metric")


# --------------------------------------------------------------------------- estimators

ESTIMATORS: list[tuple[str, dict[str, Any], str]] = [
    ("logistic_regression", {"maxIter": 10, "regParam": 0.01}, "y"),
    ("random_forest_classifier", {"numTrees": 5, "maxDepth": 4}, "y"),
    ("gbt_classifier", {"maxIter": 5, "maxDepth": 3}, "y"),
    ("linear_regression", {"maxIter": 10}, "target"),
    ("random_forest_regressor", {"numTrees": 5, "maxDepth": 4}, "target"),
    ("gbt_regressor", {"maxIter": 5, "maxDepth": 3}, "target"),
]


@pytest.fixture(scope="module")
def synthetic_train_test(spark: SparkSession) -> tuple[DataFrame, DataFrame]:
    df = synthetic_frame(spark, days(1, 6), rows_per_day=150).persist()
    return df.where(F.col("date") <= days(4, 4)[0]), df.where(F.col("date") > days(4, 4)[0])


@pytest.mark.parametrize(("estimator", "params", "label"), ESTIMATORS, ids=[e[0] for e in ESTIMATORS])
def test_estimator_trains_saves_reloads_and_predicts_the_same(
    spark: SparkSession,
    tmp_path: Path,
    synthetic_train_test: tuple[DataFrame, DataFrame],
    estimator: str,
    params: dict[str, Any],
    label: str,
) -> None:
    model_cfg = ModelConfig(
        estimator=estimator,  # type: ignore[arg-type]
        params=params,
        categorical=["segment"],
        numeric=["x1", "x2", "noise"],
        class_weight="balanced",
        threshold=0.4,
    )
    raw_train, raw_test = synthetic_train_test
    train_df = prepare_training_frame(raw_train, model_cfg, label, TABLE)
    test_df = prepare_training_frame(raw_test, model_cfg, label, TABLE)
    if model_cfg.resolved_task == "binary":
        share = train_df.agg(F.avg(label)).first()[0]  # type: ignore[index]
        train_df = with_balanced_weights(train_df, label, {1.0: share, 0.0: 1.0 - share})
    fitted = build_pipeline(model_cfg, label, seed=3).fit(train_df)

    path = str(tmp_path / "model")
    fitted.save(path)
    reloaded = PipelineModel.load(path)

    classification = model_cfg.resolved_task == "binary"
    outputs = [F.col("id"), F.col("prediction")]
    if classification:
        outputs.append(vector_to_array(F.col("probability")).alias("probability"))
    before = fitted.transform(test_df).select(*outputs)
    after = reloaded.transform(test_df).select(*outputs)
    assertDataFrameEqual(after, before, checkRowOrder=False)

    # a prediction for every input row (rows with a missing x2 included)
    assert after.count() == test_df.count() == raw_test.count()
    assert after.where(F.col("prediction").isNull() | F.isnan("prediction")).count() == 0
    metrics = evaluate_model(reloaded, test_df, model_cfg, label)
    if classification:
        p1 = F.col("probability")[1]
        assert after.where(~F.col("probability")[0].between(0.0, 1.0) | ~p1.between(0.0, 1.0)).count() == 0
        # the prediction column follows the configured threshold (0.4), as the metrics do
        assert after.where(F.col("prediction") != (p1 > 0.4).cast("double")).count() == 0
        assert metrics["areaUnderROC"] > 0.75
        assert 0.0 <= metrics["log_loss"] < 0.7
    else:
        assert metrics["r2"] > 0.6
        assert metrics["rmse"] < float(test_df.agg(F.stddev(label)).first()[0])  # type: ignore[index]


def test_feature_importances_point_at_the_columns_that_carry_signal(
    synthetic_train_test: tuple[DataFrame, DataFrame],
) -> None:
    model_cfg = ModelConfig(
        estimator="random_forest_regressor",
        params={"numTrees": 8, "maxDepth": 5},
        categorical=["segment"],
        numeric=["x1", "x2", "noise"],
    )
    train_df = prepare_training_frame(synthetic_train_test[0], model_cfg, "target", TABLE)
    fitted = build_pipeline(model_cfg, "target", seed=1).fit(train_df)
    imp = feature_importances(fitted, train_df)
    assert set(imp) == {"segment", "x1", "x2", "noise"}
    assert sum(imp.values()) == pytest.approx(1.0)
    assert imp["x1"] > imp["x2"] > imp["noise"]


# --------------------------------------------------------------------------- the train job


def test_train_job_logs_lineage_signature_and_registers_a_challenger(
    spark: SparkSession, lake_root: str, mlflow_store: dict[str, str], tmp_path: Path
) -> None:
    written = write_features(spark, lake_root, days(1, 14))
    config = synthetic_config(lake_root, mlflow_store)
    ctx = train(config, spark=spark)

    run_id = ctx.result.run_id
    ref = ctx.result.model
    assert ref is not None
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["mlops.seed"] == "11"
    assert tags["mlflow.source.git.commit"] not in ("", "unknown")
    assert tags["mlflow.source.name"] == "mlops-spark train" and tags["mlops.job_run_id"] == ctx.run_id
    assert tags["lineage.features_version"] == str(written.version)
    assert tags[f"lineage.table.features.{TABLE}"] == f"{lake_root}/features/{TABLE}@v{written.version}"
    assert params["estimator"] == "logistic_regression" and params["param.maxIter"] == "10"
    for name in (
        "test_areaUnderROC",
        "test_average_precision",
        "test_log_loss",
        "test_f1",
        "val_areaUnderROC",
    ):
        assert name in metrics
    assert metrics["test_rows"] == 4 * 120
    assert metrics["train_rows"] == 8 * 120

    # every table read, with its path and version, as an MLflow dataset input
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1
    source = json.loads(inputs[0].dataset.source)
    assert source["path"] == f"{lake_root}/features/{TABLE}"
    assert source["delta_table_version"] == str(written.version)
    assert inputs[0].dataset.name == f"features.{TABLE}"

    # the resolved config, replayable as-is
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="config/resolved.json", dst_path=str(tmp_path)
    )
    # (with the task the labels decided: 'auto' resolved to 'binary')
    assert json.loads(Path(local).read_text()) == resolved_dict(with_task(config, "binary"))

    # registered as @challenger, with a signature over the raw input columns and an example
    by_alias = client.get_model_version_by_alias(config.mlflow.model_name, "challenger")
    assert int(by_alias.version) == ref.version
    info = mlflow.models.get_model_info(ref.uri)
    assert info.signature is not None
    assert [c.name for c in info.signature.inputs.inputs] == ["segment", "x1", "x2", "noise"]
    assert info.saved_input_example_info is not None

    # the registered model predicts the same as the run's reported test metrics
    loaded = registry.load_spark_model(ref)
    raw, _ = lake.read_table(
        spark, features_table(lake_root), date_range=(config.split.test.start, config.split.test.end)
    )
    again = evaluate_model(loaded, prepare_training_frame(raw, config.model, "y", TABLE), config.model, "y")
    assert again["areaUnderROC"] == pytest.approx(metrics["test_areaUnderROC"], abs=1e-12)

    # a version is loaded once per Spark application; another version, or the same number
    # in another store (its own run), is loaded afresh
    assert registry.load_spark_model(ref) is loaded
    other = registry.ModelRef(ref.name, ref.version, "0" * 32)
    with pytest.raises(mlflow.exceptions.MlflowException):
        registry.load_spark_model(registry.ModelRef(ref.name, ref.version + 1, ref.run_id))
    assert registry.load_spark_model(other) is not loaded


def test_reproduce_gives_the_same_metrics_from_the_pinned_version_after_appends(
    spark: SparkSession, lake_root: str, mlflow_store: dict[str, str]
) -> None:
    first = write_features(spark, lake_root, days(1, 12))  # the test range (days 11-14) is half there
    config = synthetic_config(
        lake_root, mlflow_store, model={"estimator": "random_forest_classifier", "params": {"numTrees": 6}}
    )
    original = train(config, spark=spark)
    run_id = original.result.run_id

    appended = write_features(spark, lake_root, days(13, 14))  # new partitions inside the test range
    assert appended.version > first.version

    # reproduce from a config that differs in everything but where things run, with the
    # table's files split differently into Spark partitions (as another cluster would)
    other = synthetic_config(lake_root, mlflow_store, model={"estimator": "gbt_classifier"})
    splits = {"spark.sql.files.maxPartitionBytes": "4096", "spark.sql.files.openCostInBytes": "0"}
    before = {k: spark.conf.get(k) for k in splits}
    spark.conf.set("spark.sql.files.maxPartitionBytes", "4096")
    spark.conf.set("spark.sql.files.openCostInBytes", "0")
    try:
        assert spark.read.format("delta").load(f"{lake_root}/features/{TABLE}").rdd.getNumPartitions() > 12
        again = train(other, JobArgs(reproduce=run_id), spark=spark)
    finally:
        for key, value in before.items():
            spark.conf.set(key, value)

    recorded = mlflow.MlflowClient().get_run(run_id).data.metrics
    reproduced = mlflow.MlflowClient().get_run(again.result.run_id).data.metrics
    compared = [k for k in recorded if k.startswith(("test_", "val_"))]
    assert len(compared) >= 16
    for name in compared:
        assert abs(reproduced[name] - recorded[name]) <= 1e-9, name
    assert again.result.reproduction_max_abs_diff <= 1e-9
    assert reproduced["test_rows"] == 2 * 120  # the pinned version, not the 4 days now in the table
    run = mlflow.MlflowClient().get_run(again.result.run_id)
    assert run.data.tags["mlops.reproduces"] == run_id
    assert run.data.tags["lineage.features_version"] == str(first.version)
    assert run.data.params["estimator"] == "random_forest_classifier"
    assert again.result.model is None  # a reproduction is not registered
    versions = mlflow.MlflowClient().search_model_versions(f"name='{config.mlflow.model_name}'")
    assert len(versions) == 1

    # a recorded metric that the retrain cannot match fails the job, naming the metric
    mlflow.MlflowClient().log_metric(run_id, "test_areaUnderROC", 0.123)
    with pytest.raises(JobFailed, match=r"does not reproduce it within 1e-09 \(test_areaUnderROC: 0.123 ->"):
        train(config, JobArgs(reproduce=run_id), spark=spark)


def test_reproduce_of_an_unknown_run_fails_clearly(lake_root: str, mlflow_store: dict[str, str]) -> None:
    config = synthetic_config(lake_root, mlflow_store)
    with pytest.raises(JobFailed, match="--reproduce: no MLflow run 'nope'"):
        train(config, JobArgs(reproduce="nope"))
