"""The model side of a use case: estimator, tuning, time split, promotion gate, scoring."""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from mlops_spark.config.schema import DateRange, StrictModel

Task = Literal["binary", "multiclass", "regression"]
"""What a model predicts: one of two classes, one of several, or a number."""

EstimatorKind = Literal[
    "logistic_regression",
    "decision_tree_classifier",
    "random_forest_classifier",
    "gbt_classifier",
    "linear_regression",
    "decision_tree_regressor",
    "random_forest_regressor",
    "gbt_regressor",
]
REGRESSORS: frozenset[str] = frozenset(
    {"linear_regression", "decision_tree_regressor", "random_forest_regressor", "gbt_regressor"}
)
BINARY_ONLY: frozenset[str] = frozenset({"gbt_classifier"})
"""Classifiers MLlib fits for two classes only."""


class SearchDimension(StrictModel):
    kind: Literal["uniform", "loguniform", "quniform", "choice"]
    low: float | None = None
    high: float | None = None
    q: float | None = None
    options: list[Any] = Field(default_factory=list)

    @model_validator(mode="after")
    def _bounds(self) -> SearchDimension:
        if self.kind == "choice":
            if not self.options:
                raise ValueError("'choice' needs 'options'")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"'{self.kind}' needs 'low' and 'high'")
            if self.low >= self.high:
                raise ValueError(f"'low' ({self.low}) must be below 'high' ({self.high})")
            if self.kind == "loguniform" and self.low <= 0:
                raise ValueError("'loguniform' needs low > 0")
            if self.kind == "quniform" and not self.q:
                raise ValueError("'quniform' needs 'q'")
        return self


class TuningConfig(StrictModel):
    tuner: Literal["hyperopt", "optuna"] = "hyperopt"
    """The search library: hyperopt (TPE; trials as Spark tasks with parallelism > 1) or
    Optuna (TPE; trials on the driver, one at a time; works over Spark Connect)."""
    max_evals: Annotated[int, Field(ge=1)] = 8
    early_stop_rounds: Annotated[int, Field(ge=0)] = 0
    """Stop after this many trials without improvement (0: never)."""
    parallelism: Annotated[int, Field(ge=1)] = 1
    """Trials run at once with SparkTrials (single-node learners); pyspark.ml trials run one by one."""
    search_space: dict[str, SearchDimension] = Field(default_factory=dict)
    metric: str | None = None
    """Validation metric to optimise; None: promotion.metric, else areaUnderROC / rmse by task."""
    startup_trials: Annotated[int, Field(ge=1)] | None = None
    """Random trials before TPE models the space; None: a third of max_evals (2 to 20)."""
    holdout_days: Annotated[int, Field(ge=1)] | None = None
    """Without split.validation, trials are scored on the last days of the train range (this
    many; None: a quarter of it) and fitted on the days before; the final model is then
    fitted on the whole train range with the best params."""

    @model_validator(mode="after")
    def _tuner_runs_trials(self) -> TuningConfig:
        if self.tuner == "optuna" and self.parallelism > 1:
            raise ValueError(
                f"parallelism {self.parallelism} runs trials as Spark tasks, which only tuner 'hyperopt' "
                "does (SparkTrials); tuner 'optuna' runs them one at a time on the driver"
            )
        return self


class SklearnConfig(StrictModel):
    """A scikit-learn estimator by import path, e.g. sklearn.ensemble.RandomForestClassifier."""

    estimator: Annotated[str, Field(pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")]
    params: dict[str, Any] = Field(default_factory=dict)


class ModelConfig(StrictModel):
    task: Literal["auto", "binary", "multiclass", "regression"] = "auto"
    """What the model predicts. 'auto': a regressor's task is regression; a classifier's is
    inferred from the training labels (two classes: binary, more: multiclass) and recorded
    with the model, so scoring, the gate and monitoring use the task it was trained for."""
    estimator: EstimatorKind = "logistic_regression"
    params: dict[str, Any] = Field(default_factory=dict)
    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)
    impute: Literal["mean", "median", "mode"] = "median"
    scale: bool = False
    class_weight: Literal["none", "balanced"] = "none"
    threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    tuning: TuningConfig | None = None
    sklearn: SklearnConfig | None = None
    """A single-node scikit-learn learner for `tuning.tune_sklearn` (trials in parallel on Spark)."""
    reproduce_tolerance: Annotated[float, Field(ge=0.0)] = 1e-9
    """`train --reproduce` fails when a metric differs from the recorded one by more than this."""
    training_partitions: Annotated[int, Field(ge=1)] | None = 4
    """Training rows are hash-partitioned by entity id and date into this many partitions and
    sorted, so a fit does not depend on how the table's files were split (what makes
    `train --reproduce` exact on another machine). Raise it for big data; None skips it."""

    @property
    def resolved_task(self) -> Task:
        """The task as far as the config tells: set, implied by a regressor, or, for an 'auto'
        classifier, binary until the training labels (or the model's recorded task) say
        otherwise; the train job decides from the labels and records it with the model."""
        if self.task != "auto":
            return self.task
        return "regression" if self.estimator in REGRESSORS else "binary"

    def with_task(self, task: Task) -> ModelConfig:
        return self.model_copy(update={"task": task})

    @model_validator(mode="after")
    def _has_features(self) -> ModelConfig:
        if not self.categorical and not self.numeric:
            raise ValueError("a model needs at least one 'categorical' or 'numeric' feature")
        if self.task == "regression" and self.estimator not in REGRESSORS:
            raise ValueError(f"task 'regression' needs a regressor, not the classifier '{self.estimator}'")
        if self.task in ("binary", "multiclass") and self.estimator in REGRESSORS:
            raise ValueError(f"task '{self.task}' needs a classifier, not the regressor '{self.estimator}'")
        if self.task == "multiclass" and self.estimator in BINARY_ONLY:
            raise ValueError(
                f"'{self.estimator}' fits two classes only (MLlib): use a forest or logistic regression"
            )
        return self


class SplitConfig(StrictModel):
    train: DateRange
    validation: DateRange | None = None
    test: DateRange
    seed: int = 42

    @model_validator(mode="after")
    def _in_order(self) -> SplitConfig:
        ranges = [("train", self.train), ("validation", self.validation), ("test", self.test)]
        present = [(n, r) for n, r in ranges if r is not None]
        for (n1, r1), (n2, r2) in itertools.pairwise(present):
            if r2.start <= r1.end:
                raise ValueError(f"'{n2}' must start after '{n1}' ends (time split, no overlap)")
        return self


class PromotionConfig(StrictModel):
    mode: Literal["auto", "dry_run", "approval"] = "auto"
    metric: str | None = None
    """Metric compared on the holdout; None: areaUnderROC or rmse by task."""
    min_improvement: float = 0.0
    """The challenger must beat the champion by at least this much (in the metric's units)."""
    thresholds: dict[str, float] = Field(default_factory=dict)
    """Absolute floors (ceilings for error metrics such as rmse) the challenger must pass."""


class ScoringConfig(StrictModel):
    alias: str = "champion"
    table: str | None = None
    """Predictions table name; None: predictions.<model name>."""
    method: Literal["auto", "compiled", "transform", "arrow"] = "auto"
    """Scoring path: 'auto' takes the fastest exact one (compiled to Spark SQL when the model
    compiles, else MLlib transform / Arrow batches); the others force a path."""
    rows_per_commit: int = Field(1_000_000, ge=1)
    """Predictions per Delta commit (whole days, at least one day per commit): a killed
    backfill keeps what it committed, and the number of commits follows the rows, not the
    number of partitions (four years of one-row days are one commit)."""
    partitions_per_commit: int | None = Field(None, ge=1)
    """At most this many days per commit as well (None: no limit besides rows_per_commit)."""
    max_compiled_tree_nodes: int = Field(200, ge=0)
    """With method 'auto', tree models with more nodes than this score through their own
    transform: above about 200 nodes Spark's generated code for the compiled trees gets too
    large to be JIT-compiled and runs slower than MLlib (measured: benchmarks/compiled.py,
    docs/performance.md). Linear models always compile."""
    arrow_batch_rows: int = Field(50_000, ge=1)
    """Rows per Arrow batch on the Python path (fewer, larger batches: less per-batch overhead)."""
