"""Each MLlib estimator's Params, as data: ``model.params`` is checked when the config loads.

A misspelt or mistyped param (``numTrees`` on a logistic regression, ``maxIter: abc``) then
fails before Spark starts, with the key, the estimator and the params it has, instead of
inside the JVM half a minute in. The table mirrors pyspark.ml's ``Params`` (the name and
the ``TypeConverters`` function of each); ``tests/test_training.py`` compares it with the
real estimators' ``params`` on a SparkSession, so it cannot drift from the installed MLlib.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

ParamKind = Literal["int", "float", "string", "bool", "list_float", "vector", "matrix"]
"""A param's type, after the pyspark.ml TypeConverter that checks it (toInt, toFloat, ...)."""

CONVERTERS: dict[ParamKind, str] = {
    "int": "toInt",
    "float": "toFloat",
    "string": "toString",
    "bool": "toBoolean",
    "list_float": "toListFloat",
    "vector": "toVector",
    "matrix": "toMatrix",
}

EXPECTED: dict[ParamKind, str] = {
    "int": "a whole number",
    "float": "a number",
    "string": "a string",
    "bool": "true or false",
    "list_float": "a list of numbers",
    "vector": "a list of numbers (a vector)",
    "matrix": "a matrix (not settable from YAML)",
}

ESTIMATOR_PARAMS: dict[str, dict[str, ParamKind]] = {
    "logistic_regression": {
        "aggregationDepth": "int",
        "elasticNetParam": "float",
        "family": "string",
        "featuresCol": "string",
        "fitIntercept": "bool",
        "labelCol": "string",
        "lowerBoundsOnCoefficients": "matrix",
        "lowerBoundsOnIntercepts": "vector",
        "maxBlockSizeInMB": "float",
        "maxIter": "int",
        "predictionCol": "string",
        "probabilityCol": "string",
        "rawPredictionCol": "string",
        "regParam": "float",
        "standardization": "bool",
        "threshold": "float",
        "thresholds": "list_float",
        "tol": "float",
        "upperBoundsOnCoefficients": "matrix",
        "upperBoundsOnIntercepts": "vector",
        "weightCol": "string",
    },
    "decision_tree_classifier": {
        "cacheNodeIds": "bool",
        "checkpointInterval": "int",
        "featuresCol": "string",
        "impurity": "string",
        "labelCol": "string",
        "leafCol": "string",
        "maxBins": "int",
        "maxDepth": "int",
        "maxMemoryInMB": "int",
        "minInfoGain": "float",
        "minInstancesPerNode": "int",
        "minWeightFractionPerNode": "float",
        "predictionCol": "string",
        "probabilityCol": "string",
        "rawPredictionCol": "string",
        "seed": "int",
        "thresholds": "list_float",
        "weightCol": "string",
    },
    "random_forest_classifier": {
        "bootstrap": "bool",
        "cacheNodeIds": "bool",
        "checkpointInterval": "int",
        "featureSubsetStrategy": "string",
        "featuresCol": "string",
        "impurity": "string",
        "labelCol": "string",
        "leafCol": "string",
        "maxBins": "int",
        "maxDepth": "int",
        "maxMemoryInMB": "int",
        "minInfoGain": "float",
        "minInstancesPerNode": "int",
        "minWeightFractionPerNode": "float",
        "numTrees": "int",
        "predictionCol": "string",
        "probabilityCol": "string",
        "rawPredictionCol": "string",
        "seed": "int",
        "subsamplingRate": "float",
        "thresholds": "list_float",
        "weightCol": "string",
    },
    "gbt_classifier": {
        "cacheNodeIds": "bool",
        "checkpointInterval": "int",
        "featureSubsetStrategy": "string",
        "featuresCol": "string",
        "impurity": "string",
        "labelCol": "string",
        "leafCol": "string",
        "lossType": "string",
        "maxBins": "int",
        "maxDepth": "int",
        "maxIter": "int",
        "maxMemoryInMB": "int",
        "minInfoGain": "float",
        "minInstancesPerNode": "int",
        "minWeightFractionPerNode": "float",
        "predictionCol": "string",
        "probabilityCol": "string",
        "rawPredictionCol": "string",
        "seed": "int",
        "stepSize": "float",
        "subsamplingRate": "float",
        "thresholds": "list_float",
        "validationIndicatorCol": "string",
        "validationTol": "float",
        "weightCol": "string",
    },
    "linear_regression": {
        "aggregationDepth": "int",
        "elasticNetParam": "float",
        "epsilon": "float",
        "featuresCol": "string",
        "fitIntercept": "bool",
        "labelCol": "string",
        "loss": "string",
        "maxBlockSizeInMB": "float",
        "maxIter": "int",
        "predictionCol": "string",
        "regParam": "float",
        "solver": "string",
        "standardization": "bool",
        "tol": "float",
        "weightCol": "string",
    },
    "decision_tree_regressor": {
        "cacheNodeIds": "bool",
        "checkpointInterval": "int",
        "featuresCol": "string",
        "impurity": "string",
        "labelCol": "string",
        "leafCol": "string",
        "maxBins": "int",
        "maxDepth": "int",
        "maxMemoryInMB": "int",
        "minInfoGain": "float",
        "minInstancesPerNode": "int",
        "minWeightFractionPerNode": "float",
        "predictionCol": "string",
        "seed": "int",
        "varianceCol": "string",
        "weightCol": "string",
    },
    "random_forest_regressor": {
        "bootstrap": "bool",
        "cacheNodeIds": "bool",
        "checkpointInterval": "int",
        "featureSubsetStrategy": "string",
        "featuresCol": "string",
        "impurity": "string",
        "labelCol": "string",
        "leafCol": "string",
        "maxBins": "int",
        "maxDepth": "int",
        "maxMemoryInMB": "int",
        "minInfoGain": "float",
        "minInstancesPerNode": "int",
        "minWeightFractionPerNode": "float",
        "numTrees": "int",
        "predictionCol": "string",
        "seed": "int",
        "subsamplingRate": "float",
        "weightCol": "string",
    },
    "gbt_regressor": {
        "cacheNodeIds": "bool",
        "checkpointInterval": "int",
        "featureSubsetStrategy": "string",
        "featuresCol": "string",
        "impurity": "string",
        "labelCol": "string",
        "leafCol": "string",
        "lossType": "string",
        "maxBins": "int",
        "maxDepth": "int",
        "maxIter": "int",
        "maxMemoryInMB": "int",
        "minInfoGain": "float",
        "minInstancesPerNode": "int",
        "minWeightFractionPerNode": "float",
        "predictionCol": "string",
        "seed": "int",
        "stepSize": "float",
        "subsamplingRate": "float",
        "validationIndicatorCol": "string",
        "validationTol": "float",
        "weightCol": "string",
    },
}


def _is_number(value: Any) -> bool:
    # as pyspark's TypeConverters._is_numeric: bool is not a number
    return type(value) in (int, float)


def accepts(kind: ParamKind, value: Any) -> bool:
    """Whether pyspark.ml's TypeConverter for ``kind`` takes ``value`` (a YAML value)."""
    if kind == "int":
        return _is_number(value) and float(value).is_integer()
    if kind == "float":
        return _is_number(value)
    if kind == "string":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind in ("list_float", "vector"):
        return type(value) in (list, tuple) and all(_is_number(v) for v in value)
    return False  # a matrix cannot be written in YAML


def estimator_param_problems(estimator: str, params: Mapping[str, Any]) -> dict[str, str]:
    """{param name: what is wrong} for ``params`` given to ``estimator`` (empty: all good)."""
    allowed = ESTIMATOR_PARAMS[estimator]
    problems: dict[str, str] = {}
    for name, value in params.items():
        kind = allowed.get(name)
        if kind is None:
            problems[name] = f"{estimator} has no parameter {name!r} (it has: {', '.join(sorted(allowed))})"
        elif not accepts(kind, value):
            problems[name] = f"{estimator}'s {name} takes {EXPECTED[kind]} (got {value!r})"
    return problems


def unknown_estimator_params(estimator: str, names: list[str]) -> dict[str, str]:
    """{param name: what is wrong} for names (e.g. a tuning search space) ``estimator`` lacks."""
    allowed = ESTIMATOR_PARAMS[estimator]
    return {
        name: f"{estimator} has no parameter {name!r} (it has: {', '.join(sorted(allowed))})"
        for name in names
        if name not in allowed
    }
