"""The tuner a config asks for (`model.tuning.tuner`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlops_spark.config import TuningConfig
from mlops_spark.tuning.interface import Tuner

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def make_tuner(settings: TuningConfig, spark: SparkSession | None = None) -> Tuner:
    """hyperopt or Optuna. ``spark``: the session hyperopt's `SparkTrials` runs trials on
    (single-node learners); None runs them on the driver (pyspark.ml, whose fits are
    distributed). Optuna always runs them on the driver."""
    if settings.tuner == "optuna":
        from mlops_spark.tuning.optuna import OptunaTuner

        return OptunaTuner()
    from mlops_spark.tuning.hyperopt import HyperoptTuner

    return HyperoptTuner(spark)
