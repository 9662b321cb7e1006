"""Hyperparameter search behind a small interface (`interface.Tuner`).

`hyperopt.HyperoptTuner` is the shipped tuner; `spark.tune_spark_pipeline` tunes a
pyspark.ml estimator, `sklearn.tune_sklearn` a single-node scikit-learn learner; every
trial is a nested MLflow run (`tracking`).
"""

from __future__ import annotations

from mlops_spark.tuning.hyperopt import HyperoptTuner, hyperopt_space
from mlops_spark.tuning.interface import (
    Objective,
    TrialCallback,
    TrialOutcome,
    TrialResult,
    Tuner,
    TuningResult,
)
from mlops_spark.tuning.sklearn import SklearnTuning, import_learner, make_learner, tune_sklearn
from mlops_spark.tuning.spark import tune_spark_pipeline
from mlops_spark.tuning.tracking import tuning_metric

__all__ = [
    "HyperoptTuner",
    "Objective",
    "SklearnTuning",
    "TrialCallback",
    "TrialOutcome",
    "TrialResult",
    "Tuner",
    "TuningResult",
    "hyperopt_space",
    "import_learner",
    "make_learner",
    "tune_sklearn",
    "tune_spark_pipeline",
    "tuning_metric",
]
