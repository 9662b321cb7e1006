"""Model config -> a pyspark.ml Pipeline; training rows; time splits; importances.

The pipeline carries every fitted, stateful step of featurisation (category indexing,
one-hot encoding, imputation, scaling) in front of the estimator, so the saved model
takes raw feature-table rows and scoring cannot skew from training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import (
    DecisionTreeClassifier,
    GBTClassifier,
    LogisticRegression,
    RandomForestClassifier,
)
from pyspark.ml.feature import Imputer, OneHotEncoder, StandardScaler, StringIndexer, VectorAssembler
from pyspark.ml.regression import DecisionTreeRegressor, GBTRegressor, LinearRegression, RandomForestRegressor
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mlops_spark import metrics
from mlops_spark.config import DateRange, ModelConfig, SplitConfig
from mlops_spark.errors import ConfigError, JobFailed, MissingColumnError
from mlops_spark.outputs import PREDICTION, with_mllib_outputs

FEATURES_VECTOR = "__features"
WEIGHT = "__weight"

_ESTIMATORS: dict[str, Any] = {
    "logistic_regression": LogisticRegression,
    "decision_tree_classifier": DecisionTreeClassifier,
    "random_forest_classifier": RandomForestClassifier,
    "gbt_classifier": GBTClassifier,
    "linear_regression": LinearRegression,
    "decision_tree_regressor": DecisionTreeRegressor,
    "random_forest_regressor": RandomForestRegressor,
    "gbt_regressor": GBTRegressor,
}
_LINEAR = {"logistic_regression", "linear_regression"}


def make_estimator(
    model: ModelConfig, label: str, params: Mapping[str, Any] | None = None, seed: int = 42
) -> Any:
    """The configured pyspark.ml estimator, with params checked against its Params."""
    cls = _ESTIMATORS[model.estimator]
    est = cls(featuresCol=FEATURES_VECTOR, labelCol=label, predictionCol=PREDICTION)
    merged: dict[str, Any] = {}
    if model.estimator not in _LINEAR:
        merged["maxBins"] = 128  # room for categorical indices such as destinations
        merged["seed"] = seed
    merged.update(model.params)
    merged.update(params or {})
    for name, value in merged.items():
        if not est.hasParam(name):
            valid = sorted(p.name for p in est.params)
            raise ConfigError(
                f"model.params.{name}: {model.estimator} has no parameter {name!r} "
                f"(it has: {', '.join(valid)})"
            )
        param = est.getParam(name)
        try:
            est._set(**{name: param.typeConverter(value)})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model.params.{name}: {exc}") from None
    if model.resolved_task == "binary" and not {"threshold", "thresholds"} & set(merged):
        # the prediction column then agrees with the metrics' "probability > threshold"
        if model.estimator == "logistic_regression":
            est.setThreshold(model.threshold)
        else:
            est.setThresholds([1.0 - model.threshold, model.threshold])
    if model.class_weight == "balanced" and model.resolved_task != "regression":
        est.setWeightCol(WEIGHT)
    return est


def check_estimator_params(model: ModelConfig, names: list[str], where: str) -> None:
    """Fail before any fit when a (searched) parameter is not one of the estimator's Params."""
    est = _ESTIMATORS[model.estimator]()
    for name in names:
        if not est.hasParam(name):
            valid = sorted(p.name for p in est.params)
            raise ConfigError(
                f"{where}.{name}: {model.estimator} has no parameter {name!r} (it has: {', '.join(valid)})"
            )


def build_pipeline(
    model: ModelConfig, label: str, params: Mapping[str, Any] | None = None, seed: int = 42
) -> Pipeline:
    """Featurisation stages followed by the configured estimator (``params`` override
    ``model.params``, e.g. the tuned ones)."""
    return Pipeline(stages=[*featurizer_stages(model), make_estimator(model, label, params, seed)])


def featurizer_stages(model: ModelConfig) -> list[Any]:
    """Indexing, one-hot encoding (linear models), imputation, assembly and scaling into
    the ``__features`` vector: everything of the pipeline except the estimator."""
    stages: list[Any] = []
    assembled: list[str] = []
    if model.categorical:
        idx = [f"__idx_{c}" for c in model.categorical]
        stages.append(
            StringIndexer(
                inputCols=model.categorical,
                outputCols=idx,
                handleInvalid="keep",
                stringOrderType="frequencyDesc",
            )
        )
        if model.estimator in _LINEAR:
            ohe = [f"__ohe_{c}" for c in model.categorical]
            stages.append(OneHotEncoder(inputCols=idx, outputCols=ohe, handleInvalid="keep"))
            assembled += ohe
        else:
            assembled += idx
    if model.numeric:
        imputed = [f"__imp_{c}" for c in model.numeric]
        stages.append(Imputer(inputCols=model.numeric, outputCols=imputed, strategy=model.impute))
        assembled += imputed
    raw_vector = "__raw_features" if model.scale else FEATURES_VECTOR
    stages.append(VectorAssembler(inputCols=assembled, outputCol=raw_vector, handleInvalid="keep"))
    if model.scale:
        stages.append(StandardScaler(inputCol=raw_vector, outputCol=FEATURES_VECTOR, withMean=False))
    return stages


def model_input_columns(model: ModelConfig) -> list[str]:
    return [*model.categorical, *model.numeric]


def prepare_training_frame(df: DataFrame, model: ModelConfig, label: str, table: str) -> DataFrame:
    """Rows with a label, numeric inputs as double, plus class weights when configured."""
    for col in [*model_input_columns(model), label]:
        if col not in df.columns:
            raise MissingColumnError(table, col, df.columns)
    out = df.where(F.col(label).isNotNull()).select(
        *[F.col(c).cast("string").alias(c) for c in model.categorical],
        *[F.col(c).cast("double").alias(c) for c in model.numeric],
        F.col(label).cast("double").alias(label),
        *[c for c in df.columns if c not in {*model_input_columns(model), label}],
    )
    return out


def with_balanced_weights(df: DataFrame, label: str, shares: Mapping[float, float]) -> DataFrame:
    """weight = 1 / (K x share of the row's class), so every one of the K classes weighs the
    same in total (for two classes: 0.5 / share)."""
    if len(shares) < 2 or not all(0.0 < s < 1.0 for s in shares.values()):
        raise JobFailed(f"cannot balance classes: class shares are {dict(sorted(shares.items()))}")
    k = len(shares)
    ordered = sorted(shares.items())
    weight = F.when(F.col(label) == F.lit(ordered[0][0]), 1.0 / (k * ordered[0][1]))
    for cls, share in ordered[1:]:
        weight = weight.when(F.col(label) == F.lit(cls), 1.0 / (k * share))
    return df.withColumn(WEIGHT, weight)


def with_stable_layout(partitions: int, keys: Sequence[str]) -> Callable[[DataFrame], DataFrame]:
    """Hash-partition rows by ``keys`` into ``partitions`` and sort each partition by them.

    A fit's floating-point sums (and a forest's per-partition sampling) follow the rows'
    partitioning and order, which otherwise come from how the table's files happened to
    be split (file sizes, ``spark.default.parallelism``, the cluster). With unique keys
    this layout depends on the rows alone, so the same rows give the same model anywhere.
    """

    def transform(df: DataFrame) -> DataFrame:
        return df.repartition(partitions, *keys).sortWithinPartitions(*keys)

    return transform


def in_range(date_column: str, rng: DateRange) -> Column:
    return F.col(date_column).between(F.lit(rng.start), F.lit(rng.end))


@dataclass(frozen=True)
class TimeSplit:
    """Rows by date range: train, validation (when configured) and test never overlap."""

    train: DataFrame
    validation: DataFrame | None
    test: DataFrame


def time_split(df: DataFrame, date_column: str, split: SplitConfig) -> TimeSplit:
    """Split by the configured date ranges (rows between or outside the ranges are unused)."""
    return TimeSplit(
        train=df.where(in_range(date_column, split.train)),
        validation=df.where(in_range(date_column, split.validation)) if split.validation else None,
        test=df.where(in_range(date_column, split.test)),
    )


def evaluate_model(model: Any, df: DataFrame, config: ModelConfig, label: str) -> dict[str, float]:
    """Score ``df`` with a fitted pyspark.ml model (pipeline or bare estimator model) and
    measure it with `mlops_spark.metrics` (the definitions monitoring uses too)."""
    scored = df.transform(with_mllib_outputs(model, [label], config.resolved_task))
    return metrics.evaluate(scored, config.resolved_task, label)


def feature_importances(model: PipelineModel, sample: DataFrame) -> dict[str, float]:
    """Importances (trees) or absolute coefficients (linear), summed per input column.

    Slots of the assembled vector are mapped to input columns through the ML attribute
    metadata that the assembler writes (one slot per one-hot category).
    """
    est = model.stages[-1]
    if hasattr(est, "featureImportances"):
        values = est.featureImportances.toArray().tolist()
    elif hasattr(est, "coefficientMatrix") and est.coefficientMatrix.numRows > 1:  # multinomial
        matrix = est.coefficientMatrix.toArray()
        values = [float(abs(matrix[:, j]).sum()) for j in range(matrix.shape[1])]
    elif hasattr(est, "coefficients"):
        values = [abs(v) for v in est.coefficients.toArray().tolist()]
    else:
        return {}
    assembler = next(s for s in model.stages if isinstance(s, VectorAssembler))
    inputs = assembler.getInputCols()
    schema = model.transform(sample.limit(1)).schema
    meta = schema[assembler.getOutputCol()].metadata.get("ml_attr", {})
    slots: dict[int, str] = {}
    for group in meta.get("attrs", {}).values():
        for attr in group:
            name = str(attr.get("name", ""))
            owner = max((c for c in inputs if name.startswith(c)), key=len, default=name)
            slots[int(attr["idx"])] = owner
    out: dict[str, float] = {}
    for i, value in enumerate(values):
        owner = slots.get(i, f"slot_{i}")
        column = owner.split("_", 3)[-1] if owner.startswith("__") else owner
        out[column] = out.get(column, 0.0) + float(value)
    return out


def fit_on_cores(estimator: Any, df: DataFrame, partitions: int | None = None) -> Any:
    """Fit ``estimator`` (a Pipeline or an estimator) on ``df`` read by at most ``partitions``
    tasks (default: ``spark.default.parallelism``), merging input partitions without a shuffle.

    Iterative fits (LogisticRegression's L-BFGS, one Spark job per iteration) pay every
    task's scheduling once per pass; a table of many small files gives many more tasks than
    cores. Nothing is cached here: MLlib's linear models cache their own standardized blocks,
    and caching the input too would hold the data twice.
    """
    n = partitions or df.sparkSession.sparkContext.defaultParallelism
    if df.rdd.getNumPartitions() > n:
        df = df.coalesce(n)
    return estimator.fit(df)
