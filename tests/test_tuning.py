"""Tuning: the search space, TPE with early stopping, nested MLflow runs, the Spark
(pyspark.ml, trials one by one) and scikit-learn (SparkTrials, trials in parallel) paths,
and replacing hyperopt by another tuner through the `Tuner` interface."""

from __future__ import annotations

import itertools
import math
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from hyperopt.pyll import stochastic
from pyspark.sql import SparkSession

from mlops_spark import registry
from mlops_spark.config import DateRange, ModelConfig, TuningConfig
from mlops_spark.errors import ConfigError, JobFailed
from mlops_spark.jobs.train import train
from mlops_spark.metrics import METRICS
from mlops_spark.runtime import JobContext
from mlops_spark.training import prepare_training_frame, time_split
from mlops_spark.training.fit import tuning_holdout
from mlops_spark.tuning import (
    HyperoptTuner,
    Objective,
    OptunaTuner,
    TrialCallback,
    TrialOutcome,
    TrialResult,
    TuningResult,
    hyperopt_space,
    make_tuner,
    tune_sklearn,
    tune_spark_pipeline,
)

from .conftest import FlightsLake
from .test_training import TABLE, days, synthetic_config, synthetic_frame, write_features


def tuning(space: dict[str, Any], **extra: Any) -> TuningConfig:
    return TuningConfig.model_validate({"search_space": space, **extra})


# --------------------------------------------------------------------------- search space


def test_search_space_dimensions_sample_within_bounds_and_types() -> None:
    settings = tuning(
        {
            "rate": {"kind": "uniform", "low": 0.1, "high": 0.9},
            "reg": {"kind": "loguniform", "low": 1e-4, "high": 1e-1},
            "depth": {"kind": "quniform", "low": 2, "high": 8, "q": 2},
            "frac": {"kind": "quniform", "low": 0.1, "high": 0.5, "q": 0.1},
            "impurity": {"kind": "choice", "options": ["gini", "entropy"]},
        }
    )
    space = hyperopt_space(settings.search_space)
    rng = np.random.default_rng(0)
    samples = [stochastic.sample(space, rng=rng) for _ in range(300)]
    assert all(0.1 <= s["rate"] <= 0.9 for s in samples)
    assert all(1e-4 <= s["reg"] <= 1e-1 for s in samples)
    # log-uniform: about as many draws below the geometric middle as above it
    assert 100 < sum(s["reg"] < 10**-2.5 for s in samples) < 200
    assert {s["depth"] for s in samples} == {2, 4, 6, 8}
    assert all(type(s["depth"]) is int for s in samples)
    assert all(isinstance(s["frac"], float) and round(s["frac"] * 10, 6).is_integer() for s in samples)
    assert {s["impurity"] for s in samples} == {"gini", "entropy"}


# --------------------------------------------------------------------------- the tuners

TUNERS = {"hyperopt": HyperoptTuner, "optuna": OptunaTuner}


def bowl(params: dict[str, Any]) -> TrialOutcome:
    """Minimum 0 at x = 1.5, log10(lr) = -2, kind = 'b'."""
    loss = (params["x"] - 1.5) ** 2 + (math.log10(params["lr"]) + 2) ** 2 + (params["kind"] != "b")
    return TrialOutcome(loss, {"x_seen": params["x"]})


BOWL = {
    "x": {"kind": "uniform", "low": -5, "high": 5},
    "lr": {"kind": "loguniform", "low": 1e-5, "high": 1.0},
    "kind": {"kind": "choice", "options": ["a", "b", "c"]},
}


@pytest.mark.parametrize("name", sorted(TUNERS))
def test_tpe_minimises_within_the_budget_and_is_seeded(name: str) -> None:
    settings = tuning(BOWL, max_evals=40, startup_trials=10, tuner=name)
    assert isinstance(make_tuner(settings), TUNERS[name])
    seen: list[TrialResult] = []
    result = make_tuner(settings).minimize(bowl, settings, seed=5, on_trial=seen.append)
    assert len(result.trials) == 40 and not result.stopped_early
    assert [t.number for t in seen] == list(range(40))  # reported as they finished, on the driver
    assert result.best.loss is not None and result.best.loss < 0.5
    assert result.best.params["kind"] == "b"
    assert result.best.loss == min(t.loss for t in result.trials if t.loss is not None)
    assert result.best.metrics == {"x_seen": result.best.params["x"]}
    # TPE's proposals beat its random start-up trials
    assert min(t.loss for t in result.trials[10:] if t.loss is not None) < min(
        t.loss for t in result.trials[:10] if t.loss is not None
    )
    same = make_tuner(settings).minimize(bowl, settings, seed=5)
    other = make_tuner(settings).minimize(bowl, settings, seed=6)
    assert [t.params for t in same.trials] == [t.params for t in result.trials]
    assert [t.params for t in other.trials] != [t.params for t in result.trials]


@pytest.mark.parametrize(("name", "trials_when_flat"), [("hyperopt", 3), ("optuna", 4)])
def test_early_stop_ends_the_search_after_rounds_without_progress(name: str, trials_when_flat: int) -> None:
    flat = tuning(BOWL, max_evals=20, early_stop_rounds=3, tuner=name)
    stopped = make_tuner(flat).minimize(lambda p: TrialOutcome(1.0), flat, seed=1)
    # hyperopt's no_progress_loss counts the first trial as a round; Optuna's stop rule
    # counts the trials after the best one (here: the first)
    assert len(stopped.trials) == trials_when_flat and stopped.stopped_early

    counter = itertools.count()
    improving = make_tuner(flat).minimize(lambda p: TrialOutcome(-float(next(counter))), flat, seed=1)
    assert len(improving.trials) == 20 and not improving.stopped_early


@pytest.mark.parametrize("name", sorted(TUNERS))
def test_failing_trials_are_recorded_and_all_failing_is_a_job_failure(name: str) -> None:
    def fragile(params: dict[str, Any]) -> TrialOutcome:
        if params["x"] > 0:
            raise ValueError(f"x must be <= 0 (got {params['x']:.2f})")
        return TrialOutcome(-params["x"])

    settings = tuning(BOWL, max_evals=12, tuner=name)
    result = make_tuner(settings).minimize(fragile, settings, seed=3)
    failed = [t for t in result.trials if t.status == "failed"]
    assert failed and len(failed) < 12
    assert all(t.error and t.error.startswith("ValueError: x must be <= 0") for t in failed)
    assert all(t.loss is None for t in failed)
    assert result.best.params["x"] <= 0

    def broken(params: dict[str, Any]) -> TrialOutcome:
        raise RuntimeError("no data")

    few = tuning(BOWL, max_evals=3, tuner=name)
    none_ok = make_tuner(few).minimize(broken, few, seed=3)
    with pytest.raises(JobFailed, match=r"all 3 trial\(s\) failed; the first error: RuntimeError: no data"):
        _ = none_ok.best


def test_optuna_is_refused_for_parallel_trials_and_an_unknown_tuner_is_a_config_error() -> None:
    from mlops_spark.config import load_config

    from .conftest import FLIGHTS_CONF

    with pytest.raises(ConfigError, match=r"model.tuning: .*parallelism 2 runs trials as Spark tasks"):
        load_config(FLIGHTS_CONF, "local", ["model.tuning.tuner=optuna", "model.tuning.parallelism=2"])
    with pytest.raises(ConfigError, match=r"model.tuning.tuner: Input should be 'hyperopt' or 'optuna'"):
        load_config(FLIGHTS_CONF, "local", ["model.tuning.tuner=skopt"])


# --------------------------------------------------------------------------- pyspark.ml path


class GridTuner:
    """A tuner without hyperopt: every combination of the `choice` dimensions, in order."""

    def minimize(
        self,
        objective: Objective,
        settings: TuningConfig,
        seed: int,
        on_trial: TrialCallback | None = None,
    ) -> TuningResult:
        names = list(settings.search_space)
        grids = [settings.search_space[n].options for n in names]
        trials = []
        for number, values in enumerate(itertools.product(*grids)):
            params = dict(zip(names, values, strict=True))
            outcome = objective(params)
            trial = TrialResult(number, params, outcome.loss, outcome.metrics, "ok")
            trials.append(trial)
            if on_trial:
                on_trial(trial)
        return TuningResult(tuple(trials), False, 1.0)


def test_another_tuner_can_replace_hyperopt_for_spark_pipelines(
    spark: SparkSession, lake_root: str, mlflow_store: dict[str, str]
) -> None:
    config = synthetic_config(
        lake_root,
        mlflow_store,
        model={
            "class_weight": "balanced",
            "tuning": {
                "search_space": {
                    "regParam": {"kind": "choice", "options": [0.0, 10.0]},
                    "elasticNetParam": {"kind": "choice", "options": [0.0, 1.0]},
                }
            },
        },
    )
    frame = prepare_training_frame(
        synthetic_frame(spark, days(1, 10), rows_per_day=80), config.model, "y", TABLE
    )
    parts = time_split(frame, "date", config.split)
    assert parts.validation is not None
    ctx = JobContext(job="train", config=config, spark=spark, arguments={})
    with registry.start_run(config.mlflow, "tuning-test") as run:
        best, result = tune_spark_pipeline(ctx, config, parts.train, parts.validation, "y", tuner=GridTuner())
    assert [t.params for t in result.trials] == [
        {"regParam": 0.0, "elasticNetParam": 0.0},
        {"regParam": 0.0, "elasticNetParam": 1.0},
        {"regParam": 10.0, "elasticNetParam": 0.0},
        {"regParam": 10.0, "elasticNetParam": 1.0},
    ]
    # strong L1 shrinks every coefficient to zero: a constant score, validation AUC 0.5
    assert result.trials[3].metrics["areaUnderROC"] == pytest.approx(0.5)
    assert result.trials[0].metrics["areaUnderROC"] > 0.75
    assert best["regParam"] == 0.0
    assert best == result.best_params
    children = registry.child_runs(run.info.run_id)
    assert len(children) == 4
    assert {c.data.params["regParam"] for c in children} == {"0.0", "10.0"}
    assert all(c.data.metrics["loss"] == -c.data.metrics["val_areaUnderROC"] for c in children)

    bad = config.model.model_copy(
        update={"tuning": tuning({"regParm": {"kind": "uniform", "low": 0.0, "high": 1.0}})}
    )
    with pytest.raises(ConfigError, match=r"model\.tuning\.search_space\.regParm: logistic_regression"):
        tune_spark_pipeline(
            ctx, config.model_copy(update={"model": bad}), parts.train, parts.validation, "y", GridTuner()
        )


def test_train_job_tunes_in_nested_runs_and_refits_the_best_trial(
    spark: SparkSession, lake_root: str, mlflow_store: dict[str, str]
) -> None:
    write_features(spark, lake_root, days(1, 14), rows_per_day=100)
    config = synthetic_config(
        lake_root,
        mlflow_store,
        model={
            "estimator": "gbt_classifier",
            "params": {"maxIter": 4},
            "tuning": {
                "max_evals": 4,
                "startup_trials": 2,
                "search_space": {
                    "maxDepth": {"kind": "quniform", "low": 1, "high": 4, "q": 1},
                    "stepSize": {"kind": "loguniform", "low": 0.05, "high": 0.5},
                },
            },
        },
    )
    ctx = train(config, spark=spark)
    client = mlflow.MlflowClient()
    parent = client.get_run(ctx.result.run_id)
    children = registry.child_runs(parent.info.run_id)
    assert len(children) == 4
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        assert set(child.data.params) == {"maxDepth", "stepSize"}
        assert child.data.params["maxDepth"] in {"1", "2", "3", "4"}
        assert 0.05 <= float(child.data.params["stepSize"]) <= 0.5
        assert {f"val_{m}" for m in METRICS["binary"]} <= set(child.data.metrics)

    params, metrics = parent.data.params, parent.data.metrics
    (best,) = [
        c
        for c in children
        if c.data.tags["mlops.tuning.trial"] == parent.data.tags["mlops.tuning.best_trial"]
    ]
    assert best.data.metrics["val_areaUnderROC"] == max(c.data.metrics["val_areaUnderROC"] for c in children)
    assert params["tuning.best.maxDepth"] == best.data.params["maxDepth"] == params["param.maxDepth"]
    assert params["tuning.best.stepSize"] == best.data.params["stepSize"] == params["param.stepSize"]
    assert metrics["tuning_trials"] == 4
    assert metrics["tuning_best_val_areaUnderROC"] == best.data.metrics["val_areaUnderROC"]
    # the refit is the best trial's model again: same validation score
    assert metrics["val_areaUnderROC"] == pytest.approx(best.data.metrics["val_areaUnderROC"], abs=1e-9)
    assert parent.data.tags["mlops.tuning.metric"] == "areaUnderROC"


def test_without_a_validation_range_trials_are_scored_on_the_last_train_days(
    spark: SparkSession, lake_root: str, mlflow_store: dict[str, str]
) -> None:
    train_range = DateRange.model_validate({"from": days(1, 1)[0], "to": days(8, 8)[0]})
    assert tuning_holdout(train_range, None) == (days(7, 7)[0], days(8, 8)[0])  # a quarter of 8 days
    assert tuning_holdout(train_range, 3) == (days(6, 6)[0], days(8, 8)[0])
    with pytest.raises(
        JobFailed, match=r"holdout_days \(8\) must be shorter than the train range \(8 days\)"
    ):
        tuning_holdout(train_range, 8)
    one_day = DateRange.model_validate({"from": days(1, 1)[0], "to": days(1, 1)[0]})
    with pytest.raises(JobFailed, match=r"tuning needs split.validation or a train range of at least 2 days"):
        tuning_holdout(one_day, None)

    write_features(spark, lake_root, days(1, 14), rows_per_day=100)
    space = {"regParam": {"kind": "loguniform", "low": 0.001, "high": 1.0}}
    config = synthetic_config(
        lake_root,
        mlflow_store,
        model={"tuning": {"max_evals": 3, "holdout_days": 2, "search_space": space}},
        split={
            "train": {"from": days(1, 1)[0], "to": days(8, 8)[0]},
            "test": {"from": days(11, 11)[0], "to": days(14, 14)[0]},
        },
    )
    ctx = train(config, spark=spark)
    assert any("are scored on" in line for line in ctx.lines)
    parent = mlflow.MlflowClient().get_run(ctx.result.run_id)
    assert parent.data.params["tuning_holdout"] == f"{days(7, 7)[0]}..{days(8, 8)[0]}"
    assert (
        parent.data.params["train_range"] == f"{days(1, 1)[0]}..{days(8, 8)[0]}"
    )  # the refit uses all of it
    assert "validation_range" not in parent.data.params
    children = registry.child_runs(parent.info.run_id)
    assert len(children) == 3 and all("val_areaUnderROC" in c.data.metrics for c in children)
    assert parent.data.params["param.regParam"] == parent.data.params["tuning.best.regParam"]


# --------------------------------------------------------------------------- scikit-learn path


def sklearn_data(seed: int, n: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "noise": rng.normal(size=n)})
    logit = -1.0 + 2.0 * x["x1"] - 1.5 * x["x2"]
    y = pd.Series((rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(float))
    return x, y


def test_tune_sklearn_runs_trials_on_spark_and_logs_each_as_a_nested_run(
    spark: SparkSession, mlflow_store: dict[str, str]
) -> None:
    model = ModelConfig.model_validate(
        {
            "numeric": ["x1", "x2", "noise"],
            "class_weight": "balanced",
            "threshold": 0.5,
            "sklearn": {"estimator": "sklearn.ensemble.RandomForestClassifier", "params": {"n_jobs": 1}},
            "tuning": {
                "max_evals": 4,
                "parallelism": 2,
                "search_space": {
                    "n_estimators": {"kind": "quniform", "low": 5, "high": 20, "q": 5},
                    "max_depth": {"kind": "quniform", "low": 2, "high": 6, "q": 1},
                    "criterion": {"kind": "choice", "options": ["gini", "entropy"]},
                },
            },
        }
    )
    train_xy, val_xy = sklearn_data(1, 1500), sklearn_data(2, 600)
    mlflow.set_tracking_uri(mlflow_store["tracking_uri"])
    with mlflow.start_run() as run:
        tuned = tune_sklearn(spark, model, train_xy, val_xy, seed=4)
    result = tuned.result
    assert len(result.succeeded) == 4
    for trial in result.trials:
        assert type(trial.params["n_estimators"]) is int and trial.params["n_estimators"] in {5, 10, 15, 20}
        assert trial.params["criterion"] in {"gini", "entropy"}
        assert set(trial.metrics) == set(METRICS["binary"])
        assert trial.metrics["areaUnderROC"] > 0.75
    assert tuned.metric == "areaUnderROC"
    # the returned model is the best trial's learner, refitted: same validation score
    proba = tuned.model.predict_proba(val_xy[0])[:, 1]
    assert ((proba >= 0) & (proba <= 1)).all() and len(proba) == len(val_xy[0])
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(val_xy[1], proba) == pytest.approx(result.best.metrics["areaUnderROC"], abs=1e-12)
    assert tuned.model.get_params()["n_estimators"] == tuned.best_params["n_estimators"]

    children = registry.child_runs(run.info.run_id)
    assert len(children) == 4
    assert {c.data.tags["mlops.tuning.trial"] for c in children} == {"0", "1", "2", "3"}
    parent = mlflow.MlflowClient().get_run(run.info.run_id)
    assert parent.data.tags["mlops.tuning.kind"] == "sklearn"
    assert parent.data.metrics["tuning_trials"] == 4

    wrong = model.model_copy(
        update={"tuning": tuning({"n_trees": {"kind": "quniform", "low": 5, "high": 20, "q": 5}})}
    )
    with pytest.raises(ConfigError, match=r"model\.tuning\.search_space\.n_trees: sklearn\.ensemble"):
        tune_sklearn(spark, wrong, train_xy, val_xy)
    assert model.sklearn is not None
    nope = model.sklearn.model_copy(update={"estimator": "sklearn.Nope"})
    missing = model.model_copy(update={"sklearn": nope})
    with pytest.raises(ConfigError, match=r"model\.sklearn\.estimator: cannot import 'sklearn\.Nope'"):
        tune_sklearn(spark, missing, train_xy, val_xy)


@pytest.mark.parametrize("name", sorted(TUNERS))
def test_the_demo_search_runs_with_each_tuner(
    name: str, spark: SparkSession, flights_copy: FlightsLake
) -> None:
    """conf/flights.yml's own search (regParam, elasticNetParam) on the real flights lake,
    through the train job, with `model.tuning.tuner` set to each tuner."""
    config = flights_copy.config(**{"model.tuning.tuner": name})
    assert config.model.tuning is not None
    space = config.model.tuning.search_space
    assert set(space) == {"regParam", "elasticNetParam"}
    trained = train(config, spark=spark)
    client = mlflow.MlflowClient()
    parent = client.get_run(trained.result.run_id)
    assert parent.data.tags["mlops.tuning.tuner"] == TUNERS[name].__name__
    children = registry.child_runs(parent.info.run_id)
    assert len(children) == config.model.tuning.max_evals == 2
    for child in children:
        assert set(child.data.params) == set(space)
        for key, dim in space.items():
            assert dim.low is not None and dim.high is not None
            assert dim.low <= float(child.data.params[key]) <= dim.high
        assert child.data.metrics["loss"] == -child.data.metrics["val_areaUnderROC"]
    best = min(children, key=lambda c: c.data.metrics["loss"])
    assert {k: float(parent.data.params[f"tuning.best.{k}"]) for k in space} == {
        k: float(best.data.params[k]) for k in space
    }
    assert parent.data.metrics["test_areaUnderROC"] > 0.5
