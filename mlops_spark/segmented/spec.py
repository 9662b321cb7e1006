"""What a segmented model is: its spec (`RouteSpec`, `FitSpec`) and the config views the
generic jobs (promote, score, monitor) use to treat it like any other model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mlops_spark.config import REGRESSORS, AppConfig, ModelConfig, SegmentedConfig
from mlops_spark.errors import ConfigError

GLOBAL = "__global__"
"""The key of the fallback model, fitted on every train row."""
MISSING = "<missing>"
"""What a null categorical input becomes before it reaches an estimator."""
MODEL_SEGMENT = "model_segment"
"""Output column: which model scored the row (its segment, or GLOBAL)."""
SEGMENT_KEY = "__segment"
ROLE = "__role"
PART = "__fit_task"

Task = Literal["binary", "regression"]

# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class RouteSpec:
    """What scoring needs: where the segment is, the inputs, the task and the threshold."""

    segment_column: str
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    task: Task
    threshold: float = 0.5
    fallback: Literal["global", "error"] = "global"

    def __post_init__(self) -> None:
        if self.task not in ("binary", "regression"):
            raise ValueError(f"segmented task {self.task!r}: a segmented model is 'binary' or 'regression'")

    @property
    def inputs(self) -> list[str]:
        return [*self.categorical, *self.numeric]


@dataclass(frozen=True)
class FitSpec:
    """What a segment's fit needs besides the estimator (shipped to the executors)."""

    route: RouteSpec
    label: str
    min_rows: int = 100
    one_hot: bool = True
    impute: Literal["none", "mean", "median"] = "median"
    class_weight: Literal["none", "balanced"] = "none"
    seed: int = 42


def segment_inputs(config: AppConfig) -> tuple[list[str], list[str]]:
    """(categorical, numeric) inputs of the segmented model: the section's own lists, else
    the model's (categorical without the segment column)."""
    seg = _section(config)
    categorical = (
        seg.categorical
        if seg.categorical is not None
        else [c for c in config.model.categorical if c != seg.segment_column]
    )
    numeric = seg.numeric if seg.numeric is not None else list(config.model.numeric)
    if seg.segment_column in categorical or seg.segment_column in numeric:
        raise ConfigError(
            f"segmented.segment_column {seg.segment_column!r} is also an input: every row of a "
            "segment has the same value, so remove it from segmented.categorical / segmented.numeric"
        )
    if not categorical and not numeric:
        raise ConfigError(
            "segmented: the model has no inputs (set segmented.numeric or segmented.categorical)"
        )
    return list(categorical), list(numeric)


def segment_task(config: AppConfig) -> Task:
    """segmented.task, else model.task ('auto' with a classifier: binary, the segmented
    model's only classification task)."""
    task = _section(config).task or config.model.task
    if task == "auto":
        return "regression" if config.model.estimator in REGRESSORS else "binary"
    if task == "multiclass":
        raise ConfigError("segmented.task: a segmented model is binary or regression (got multiclass)")
    return task


def route_spec(config: AppConfig) -> RouteSpec:
    seg = _section(config)
    categorical, numeric = segment_inputs(config)
    return RouteSpec(
        segment_column=seg.segment_column,
        categorical=tuple(categorical),
        numeric=tuple(numeric),
        task=segment_task(config),
        threshold=config.model.threshold,
        fallback=seg.fallback,
    )


def fit_spec(config: AppConfig) -> FitSpec:
    seg = _section(config)
    if config.features.label is None:
        raise ConfigError("segmented: features.label is not configured, so there is nothing to fit")
    return FitSpec(
        route=route_spec(config),
        label=config.features.label.name,
        min_rows=seg.min_rows,
        one_hot=seg.one_hot,
        impute=seg.impute,
        class_weight=seg.class_weight,
        seed=config.split.seed,
    )


def segmented_model_config(config: AppConfig) -> ModelConfig:
    """The ``model`` section the generic jobs (promote, score, monitor) see for the segmented
    model: they read only its task, threshold and input columns (the segment column comes
    first among the categorical inputs). The estimator named here is a stand-in for the
    task; the real estimators are in the registered model."""
    categorical, numeric = segment_inputs(config)
    task = segment_task(config)
    return ModelConfig(
        task=task,
        estimator="logistic_regression" if task == "binary" else "linear_regression",
        categorical=[_section(config).segment_column, *categorical],
        numeric=numeric,
        threshold=config.model.threshold,
    )


def segmented_app_config(config: AppConfig) -> AppConfig:
    """The use case's config pointed at the segmented model: its registered name, its
    predictions table and its inputs. Run the ordinary promote / score / monitor jobs with
    it and they gate, score and watch the segmented model like any other model."""
    seg = _section(config)
    return config.model_copy(
        update={
            "model": segmented_model_config(config),
            "mlflow": config.mlflow.model_copy(update={"model_name": seg.model_name}),
            "scoring": config.scoring.model_copy(update={"table": seg.predictions_table or seg.model_name}),
        }
    )


def _section(config: AppConfig) -> SegmentedConfig:
    if config.segmented is None:
        raise ConfigError(
            "no 'segmented:' section in the config (model_name, segment_column, estimator, ...)"
        )
    return config.segmented
