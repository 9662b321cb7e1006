"""One definition of every model-quality metric, for every task and every caller.

Training, tuning, the promotion gate, monitoring, canaries, A/B tests and segmented models
all measure through this package, so the gate and the monitor cannot disagree about the
same rows. Spark implementations (`binary`, `multiclass`, `regression`) return long
frames ``(group..., metric, value)``; `local` computes the same on NumPy arrays for
learners that fit in one process. All are exact (no binned curves) and tested against
scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame

from mlops_spark.config.model import Task
from mlops_spark.errors import ConfigError
from mlops_spark.metrics.binary import BINARY_METRICS, binary_metrics
from mlops_spark.metrics.frames import EPSILON, METRIC, VALUE, as_dict, safe_divide
from mlops_spark.metrics.multiclass import MULTICLASS_METRICS, multiclass_metrics
from mlops_spark.metrics.regression import REGRESSION_METRICS, regression_metrics

METRICS: dict[Task, tuple[str, ...]] = {
    "binary": BINARY_METRICS,
    "multiclass": MULTICLASS_METRICS,
    "regression": REGRESSION_METRICS,
}
DEFAULT_METRIC: dict[Task, str] = {"binary": "areaUnderROC", "multiclass": "macro_f1", "regression": "rmse"}

LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss", "brier"})
"""Error metrics: smaller is better, thresholds on them are ceilings."""


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def primary_metric(task: Task, name: str | None = None, where: str = "metric") -> tuple[str, bool]:
    """(metric name, True when higher is better); a name the task does not measure is a ConfigError."""
    if task not in METRICS:
        raise ConfigError(f"{where}: unknown task {task!r} (expected one of: {', '.join(METRICS)})")
    metric = name or DEFAULT_METRIC[task]
    known = METRICS[task]
    if metric not in known:
        raise ConfigError(f"{where}: {metric!r} is not a {task} metric (choose one of: {', '.join(known)})")
    return metric, higher_is_better(metric)


def task_metrics(
    df: DataFrame,
    task: Task,
    label: str,
    group_cols: Sequence[str] = (),
    prediction: str = "prediction",
    probability: str = "probability",
    probabilities: str | None = "probabilities",
) -> DataFrame:
    """The task's metrics of labelled predictions per group (long format)."""
    if task == "binary":
        return binary_metrics(df, label, group_cols, probability=probability, prediction=prediction)
    if task == "multiclass":
        probs = probabilities if probabilities and probabilities in df.columns else None
        return multiclass_metrics(df, label, group_cols, probabilities=probs, prediction=prediction)
    return regression_metrics(df, label, group_cols, prediction=prediction)


def evaluate(df: DataFrame, task: Task, label: str, what: str = "the evaluation rows") -> dict[str, float]:
    """The task's metrics of all labelled rows of ``df`` as {metric: value} (one Spark job)."""
    return as_dict(task_metrics(df, task, label), what)


__all__ = [
    "DEFAULT_METRIC",
    "EPSILON",
    "LOWER_IS_BETTER",
    "METRIC",
    "METRICS",
    "VALUE",
    "Task",
    "binary_metrics",
    "evaluate",
    "higher_is_better",
    "multiclass_metrics",
    "primary_metric",
    "regression_metrics",
    "safe_divide",
    "task_metrics",
]
