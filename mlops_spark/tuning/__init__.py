"""Hyperparameter search behind a small interface (`interface.Tuner`).

`hyperopt.HyperoptTuner` and `optuna.OptunaTuner` are the tuners (`tuners.make_tuner`
picks the one `model.tuning.tuner` names); `spark.tune_spark_pipeline` tunes a
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
from mlops_spark.tuning.optuna import OptunaTuner
from mlops_spark.tuning.sklearn import SklearnTuning, import_learner, make_learner, tune_sklearn
from mlops_spark.tuning.spark import tune_spark_pipeline
from mlops_spark.tuning.tracking import tuning_metric
from mlops_spark.tuning.tuners import make_tuner

__all__ = [
    "HyperoptTuner",
    "Objective",
    "OptunaTuner",
    "SklearnTuning",
    "TrialCallback",
    "TrialOutcome",
    "TrialResult",
    "Tuner",
    "TuningResult",
    "hyperopt_space",
    "import_learner",
    "make_learner",
    "make_tuner",
    "tune_sklearn",
    "tune_spark_pipeline",
    "tuning_metric",
]
