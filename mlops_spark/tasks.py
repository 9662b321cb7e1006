"""What a model predicts, decided once: from the config, from the training labels, or from
what the registered model recorded.

``model.task: auto`` means: a regressor does regression; a classifier is binary when the
training labels are the two classes 0 and 1, multiclass when they are the classes 0..K-1
(K > 2). The train job records the task with the model (run param ``task``), and every later
job reads it from the model version it works with, so a model is always scored, gated and
monitored for the task it was trained for.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.tracking import MlflowClient
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.config import BINARY_ONLY, REGRESSORS, AppConfig, ModelConfig, Task
from mlops_spark.errors import ConfigError, DataQualityError, MissingColumnError
from mlops_spark.outputs import TASKS

MAX_CLASSES = 100
"""A classifier's label with more distinct values than this is not a class index."""


@dataclass(frozen=True)
class LabelProfile:
    """The training labels at a glance (computed in one small Spark job)."""

    rows: int
    numeric: bool
    values: tuple[float, ...]
    """The distinct values, sorted (at most MAX_CLASSES + 1 of them)."""

    @property
    def integral(self) -> bool:
        return all(float(v).is_integer() for v in self.values)

    @property
    def class_indices(self) -> bool:
        """The values are 0..K-1 (every class present)."""
        return self.integral and [int(v) for v in self.values] == list(range(len(self.values)))


def label_profile(df: DataFrame, label: str, table: str) -> LabelProfile:
    if label not in df.columns:
        raise MissingColumnError(table, label, df.columns)
    dtype = df.schema[label].dataType
    numeric = isinstance(dtype, T.NumericType | T.BooleanType)
    labelled = df.where(F.col(label).isNotNull())
    if not numeric:
        sample = [r[0] for r in labelled.select(label).distinct().limit(3).collect()]
        return LabelProfile(labelled.count(), False, tuple(float("nan") for _ in sample))
    rows = labelled.select(F.col(label).cast("double").alias("v")).distinct().limit(MAX_CLASSES + 1).collect()
    return LabelProfile(labelled.count(), True, tuple(sorted(float(r["v"]) for r in rows)))


def infer_task(model: ModelConfig, profile: LabelProfile, table: str, label: str) -> Task:
    """The task ``model.task: auto`` stands for, given the training labels; a clear error when
    the labels do not fit the configured task or estimator."""
    where = f"features.label {label!r} of {table}"
    if not profile.numeric:
        raise ConfigError(
            f"{where} is not numeric: a classifier needs class indices 0..K-1 and a regressor numbers; "
            "map it in features.label.expr (e.g. CASE weather WHEN 'sun' THEN 0 ... END)"
        )
    if profile.rows == 0:
        raise DataQualityError(f"{where} has no labelled rows in the train range (split.train)")
    task = model.task
    if task == "regression" or (task == "auto" and model.estimator in REGRESSORS):
        return "regression"
    shown = ", ".join(f"{v:g}" for v in profile.values[:8]) + (" ..." if len(profile.values) > 8 else "")
    if len(profile.values) < 2:
        raise DataQualityError(
            f"{where} has one class only ({shown}) in the train range: a classifier needs at least two "
            "(widen split.train or check the label expression)"
        )
    if not profile.class_indices:
        raise ConfigError(
            f"{where} has values {shown}: model.task {task!r} with {model.estimator} needs class indices "
            "0..K-1 (map the label in features.label.expr), or a regressor with model.task: regression"
        )
    found: Task = "binary" if len(profile.values) == 2 else "multiclass"
    if task != "auto" and task != found:
        raise ConfigError(f"model.task is {task!r} but {where} has {len(profile.values)} classes ({shown})")
    if found == "multiclass" and model.estimator in BINARY_ONLY:
        raise ConfigError(
            f"model.estimator: {model.estimator} fits two classes only, and {where} has "
            f"{len(profile.values)} ({shown}); use logistic_regression or a forest"
        )
    return found


def with_task(config: AppConfig, task: Task) -> AppConfig:
    """The config with its model's task decided."""
    if config.model.task == task:
        return config
    return config.model_copy(update={"model": config.model.with_task(task)})


def recorded_task(client: MlflowClient, run_id: str) -> Task | None:
    """The task a training run recorded (run param ``task``), if any."""
    value = client.get_run(run_id).data.params.get("task")
    return value if value in TASKS else None


def for_model(config: AppConfig, client: MlflowClient, run_id: str) -> AppConfig:
    """The config with the task the model of ``run_id`` was trained for (an explicit
    model.task must agree with it)."""
    task = recorded_task(client, run_id)
    if task is None:
        return with_task(config, config.model.resolved_task)
    if config.model.task not in ("auto", task):
        raise ConfigError(
            f"model.task is {config.model.task!r} but the model of run {run_id} was trained as {task}"
        )
    return with_task(config, task)
