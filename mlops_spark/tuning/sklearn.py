"""Tuning a single-node scikit-learn learner on pandas data, trials in parallel on Spark."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops_spark.config import ModelConfig, SklearnConfig
from mlops_spark.errors import ConfigError, JobFailed
from mlops_spark.metrics import Task
from mlops_spark.tuning.interface import Objective, TrialOutcome, Tuner, TuningResult
from mlops_spark.tuning.tracking import active_run_id, log_summary, mlflow_trial_logger, tuning_metric
from mlops_spark.tuning.tuners import make_tuner

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

# --------------------------------------------------------------------------- scikit-learn


def import_learner(path: str) -> type:
    """The class at an import path such as ``sklearn.ensemble.RandomForestClassifier``."""
    module_name, _, attr = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"model.sklearn.estimator: cannot import {path!r} ({exc})") from None
    if not isinstance(cls, type):
        raise ConfigError(f"model.sklearn.estimator: {path!r} is not a class")
    return cls


def make_learner(learner: SklearnConfig, params: Mapping[str, Any] | None = None, seed: int = 42) -> Any:
    """An unfitted learner with config params, then ``params``; ``random_state`` = seed
    unless set. Unknown parameter names are a ConfigError."""
    cls = import_learner(learner.estimator)
    est = cls()
    valid = set(est.get_params(deep=False))
    merged = {
        **({"random_state": seed} if "random_state" in valid else {}),
        **learner.params,
        **(params or {}),
    }
    for name in merged:
        if name not in valid:
            raise ConfigError(
                f"model.sklearn.params.{name}: {learner.estimator} has no parameter {name!r} "
                f"(it has: {', '.join(sorted(valid))})"
            )
    return est.set_params(**merged)


def sklearn_metrics(
    model: Any, features: pd.DataFrame, label: pd.Series, task: Task, threshold: float = 0.5
) -> dict[str, float]:
    """The Spark path's metric names and definitions (`mlops_spark.metrics.local`); binary
    labels are 0/1, P(1) comes from ``predict_proba`` and the decision is P(1) > threshold."""
    from mlops_spark.metrics import local

    y = np.asarray(label, dtype=float)
    if task == "regression":
        return local.regression_metrics(y, np.asarray(model.predict(features), dtype=float))
    classes = [float(c) for c in model.classes_]
    if 1.0 not in classes:
        raise JobFailed(f"tune_sklearn: the learner saw no positive (1) label; classes {classes}")
    p = np.asarray(model.predict_proba(features))[:, classes.index(1.0)]
    return local.binary_metrics(y, p, (p > threshold).astype(float))


def balanced_sample_weight(label: pd.Series) -> np.ndarray:
    """The Spark path's class weights: 0.5 / share of the row's class."""
    y = np.asarray(label, dtype=float)
    share = float(y.mean())
    if not 0.0 < share < 1.0:
        raise JobFailed(f"cannot balance classes: positive share is {share:.3f}")
    return np.where(y == 1.0, 0.5 / share, 0.5 / (1.0 - share))


@dataclass(frozen=True)
class SklearnTuning:
    """The search and the learner refitted on the train rows with the best params."""

    result: TuningResult
    model: Any
    metric: str

    @property
    def best_params(self) -> dict[str, Any]:
        return self.result.best_params


def _sklearn_objective(
    learner: SklearnConfig,
    train: tuple[pd.DataFrame, pd.Series],
    validation: tuple[pd.DataFrame, pd.Series],
    task: Task,
    metric: str,
    higher: bool,
    threshold: float,
    seed: int,
    sample_weight: np.ndarray | None,
) -> Objective:
    def objective(params: dict[str, Any]) -> TrialOutcome:
        est = make_learner(learner, params, seed)
        if sample_weight is not None:
            est.fit(train[0], train[1], sample_weight=sample_weight)
        else:
            est.fit(train[0], train[1])
        metrics = sklearn_metrics(est, validation[0], validation[1], task, threshold)
        return TrialOutcome(-metrics[metric] if higher else metrics[metric], metrics)

    return objective


def tune_sklearn(
    spark: SparkSession | None,
    model: ModelConfig,
    train: tuple[pd.DataFrame, pd.Series],
    validation: tuple[pd.DataFrame, pd.Series],
    metric: str | None = None,
    seed: int = 42,
    tuner: Tuner | None = None,
) -> SklearnTuning:
    """Tune ``model.sklearn`` over ``model.tuning`` on pandas (features, label) pairs.

    With a Spark session the trials run on Spark through `SparkTrials`,
    ``model.tuning.parallelism`` at a time; without one, one after another here. Class
    weights follow ``model.class_weight``; the decision threshold ``model.threshold``.
    Inside an active MLflow run each trial is logged as a nested run. The best params are
    refitted on the train rows.
    """
    learner, settings = model.sklearn, model.tuning
    if learner is None:
        raise ConfigError("model.sklearn is not configured (an estimator import path and params)")
    if settings is None or not settings.search_space:
        raise ConfigError("model.tuning.search_space is empty: nothing to tune")
    probe = make_learner(learner, seed=seed)
    unknown = sorted(set(settings.search_space) - set(probe.get_params(deep=False)))
    if unknown:
        raise ConfigError(
            f"model.tuning.search_space.{unknown[0]}: {learner.estimator} has no parameter {unknown[0]!r}"
        )
    name, higher = tuning_metric(model, settings, metric)
    weights = (
        balanced_sample_weight(train[1])
        if model.class_weight == "balanced" and model.resolved_task == "binary"
        else None
    )
    objective = _sklearn_objective(
        learner, train, validation, model.resolved_task, name, higher, model.threshold, seed, weights
    )
    parent = active_run_id()
    on_trial = mlflow_trial_logger(parent) if parent else None
    tuner = tuner or make_tuner(settings, spark)
    result = tuner.minimize(objective, settings, seed, on_trial)
    best = make_learner(learner, result.best_params, seed)
    if weights is not None:
        best.fit(train[0], train[1], sample_weight=weights)
    else:
        best.fit(train[0], train[1])
    if parent:
        log_summary(parent, result, name, "sklearn", tuner)
    return SklearnTuning(result=result, model=best, metric=name)
