"""Model config -> a pyspark.ml Pipeline; time splits; metrics.

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
    GBTClassifier,
    LogisticRegression,
    RandomForestClassifier,
)
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import Imputer, OneHotEncoder, StandardScaler, StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.ml.regression import GBTRegressor, LinearRegression, RandomForestRegressor
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mlops_spark.config import DateRange, ModelConfig, SplitConfig
from mlops_spark.errors import ConfigError, JobFailed, MissingColumnError
from mlops_spark.promotion import higher_is_better

FEATURES_VECTOR = "__features"
WEIGHT = "__weight"
PROBABILITY = "probability"
PREDICTION = "prediction"

_ESTIMATORS: dict[str, Any] = {
    "logistic_regression": LogisticRegression,
    "random_forest_classifier": RandomForestClassifier,
    "gbt_classifier": GBTClassifier,
    "linear_regression": LinearRegression,
    "random_forest_regressor": RandomForestRegressor,
    "gbt_regressor": GBTRegressor,
}
_LINEAR = {"logistic_regression", "linear_regression"}

CLASSIFICATION_METRICS = (
    "areaUnderROC",
    "areaUnderPR",
    "log_loss",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "positive_rate",
    "rows",
)
REGRESSION_METRICS = ("rmse", "mae", "r2", "rows")


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
    if model.task == "classification" and not {"threshold", "thresholds"} & set(merged):
        # the prediction column then agrees with the metrics' "probability > threshold"
        if model.estimator == "logistic_regression":
            est.setThreshold(model.threshold)
        else:
            est.setThresholds([1.0 - model.threshold, model.threshold])
    if model.class_weight == "balanced" and model.task == "classification":
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


def with_balanced_weights(df: DataFrame, label: str, positive_share: float) -> DataFrame:
    """weight = 0.5 / share of the row's class, so both classes weigh the same in total."""
    if not 0.0 < positive_share < 1.0:
        raise JobFailed(f"cannot balance classes: positive share is {positive_share:.3f}")
    w = F.when(F.col(label) == 1.0, 0.5 / positive_share).otherwise(0.5 / (1.0 - positive_share))
    return df.withColumn(WEIGHT, w)


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


def positive_probability(col: str = PROBABILITY) -> Column:
    return vector_to_array(F.col(col)).getItem(1)


def classification_metrics(scored: DataFrame, label: str, threshold: float) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, accuracy, precision, recall and F1 at `threshold`
    (a row is predicted positive when its probability is above the threshold, as the
    estimator's own prediction column does)."""
    p = F.greatest(F.least(positive_probability(), F.lit(1 - 1e-15)), F.lit(1e-15))
    y = F.col(label)
    hit = (positive_probability() > threshold).cast("double")
    row = scored.select(
        F.count(F.lit(1)).alias("n"),
        F.avg(-(y * F.log(p) + (1 - y) * F.log(1 - p))).alias("log_loss"),
        F.sum(hit * y).alias("tp"),
        F.sum(hit * (1 - y)).alias("fp"),
        F.sum((1 - hit) * y).alias("fn"),
        F.sum((1 - hit) * (1 - y)).alias("tn"),
        F.avg(y).alias("positive_rate"),
    ).first()
    assert row is not None
    n = int(row["n"])
    if n == 0:
        raise JobFailed("cannot evaluate: the evaluation range has no labelled rows")
    tp, fp, fn, tn = (float(row[k] or 0.0) for k in ("tp", "fp", "fn", "tn"))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    evaluator = BinaryClassificationEvaluator(labelCol=label, rawPredictionCol=PROBABILITY)
    return {
        "areaUnderROC": evaluator.setMetricName("areaUnderROC").evaluate(scored),
        "areaUnderPR": evaluator.setMetricName("areaUnderPR").evaluate(scored),
        "log_loss": float(row["log_loss"]),
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "positive_rate": float(row["positive_rate"]),
        "rows": float(n),
    }


def regression_metrics(scored: DataFrame, label: str) -> dict[str, float]:
    err = F.col(PREDICTION) - F.col(label)
    row = scored.select(
        F.count(F.lit(1)).alias("n"),
        F.sqrt(F.avg(err * err)).alias("rmse"),
        F.avg(F.abs(err)).alias("mae"),
        F.sum(err * err).alias("sse"),
        F.variance(F.col(label)).alias("var"),
    ).first()
    assert row is not None
    n = int(row["n"])
    if n == 0:
        raise JobFailed("cannot evaluate: the evaluation range has no labelled rows")
    sst = float(row["var"] or 0.0) * (n - 1)
    r2 = 1.0 - float(row["sse"]) / sst if sst else 0.0
    return {"rmse": float(row["rmse"]), "mae": float(row["mae"]), "r2": r2, "rows": float(n)}


def scored_metrics(scored: DataFrame, config: ModelConfig, label: str) -> dict[str, float]:
    """The task's metrics of rows that already carry the model's output columns."""
    if config.task == "regression":
        return regression_metrics(scored, label)
    # three passes (counts, ROC curve, PR curve): score the rows once
    scored = scored.persist()
    try:
        return classification_metrics(scored, label, config.threshold)
    finally:
        scored.unpersist()


def evaluate(model: Any, df: DataFrame, config: ModelConfig, label: str) -> dict[str, float]:
    """Score ``df`` with a fitted model (pipeline or bare estimator model) and measure it."""
    return scored_metrics(model.transform(df), config, label)


def metric_names(config: ModelConfig) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if config.task == "classification" else REGRESSION_METRICS


def primary_metric(config: ModelConfig, name: str | None = None, where: str = "metric") -> tuple[str, bool]:
    """(metric name, True when higher is better); an unknown name is a ConfigError."""
    metric = name or ("areaUnderROC" if config.task == "classification" else "rmse")
    known = metric_names(config)
    if metric not in known:
        raise ConfigError(
            f"{where}: {metric!r} is not a {config.task} metric (choose one of: {', '.join(known)})"
        )
    return metric, higher_is_better(metric)


def feature_importances(model: PipelineModel, sample: DataFrame) -> dict[str, float]:
    """Importances (trees) or absolute coefficients (linear), summed per input column.

    Slots of the assembled vector are mapped to input columns through the ML attribute
    metadata that the assembler writes (one slot per one-hot category).
    """
    est = model.stages[-1]
    if hasattr(est, "featureImportances"):
        values = est.featureImportances.toArray().tolist()
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
